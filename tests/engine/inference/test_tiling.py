import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.jobs import InputError
from engine.inference.tiling import Grid, Stitcher, check_tiling, ramp_weights, window_starts

grids = st.builds(
    lambda tile, ov_frac, w, h: Grid(w, h, tile, int(ov_frac * (tile // 2 - 1))),
    st.integers(4, 40), st.floats(0, 1), st.integers(1, 130), st.integers(1, 130))


@settings(max_examples=150, deadline=None)
@given(length=st.integers(1, 500), tile=st.integers(2, 64), data=st.data())
def test_window_starts_cover_axis_and_stay_inside(length, tile, data):
    overlap = data.draw(st.integers(0, (tile - 1) // 2))
    starts = window_starts(length, tile, tile - overlap)
    covered = np.zeros(length, bool)
    for s in starts:
        assert s >= 0
        assert s + tile <= max(length, tile)
        covered[s:s + tile] = True
    assert covered.all()
    assert starts == sorted(set(starts))
    gaps = np.diff(starts)
    assert (gaps <= tile - overlap).all()
    assert len(starts) == 1 or gaps.max() - gaps.min() <= 1  # evenly spread, none squeezed
    assert len(starts) == -(-max(length - tile, 0) // (tile - overlap)) + 1  # no more than needed


def test_ramp_weights_are_positive_flat_topped_and_symmetric():
    w = ramp_weights(64, 16)
    assert (w > 0).all() and w.max() == 1.0
    assert np.allclose(w, w[::-1])
    assert (w[16:48] == 1).all() and (np.diff(w[:16]) > 0).all()


def test_ramps_of_neighbours_sum_to_one_in_a_regular_overlap():
    tile, overlap = 64, 16
    w = ramp_weights(tile, overlap)
    # window A ends where window B starts + overlap: A's falling ramp + B's rising ramp == 1
    assert np.allclose(w[tile - overlap:] + w[:overlap], 1.0)


def stitch(grid: Grid, channels: int, window) -> tuple:
    """Run every window of ``grid`` through a stitcher, checking each block lands once."""
    st_, c = Stitcher(grid, channels), channels
    out = torch.full((c, grid.height, grid.width), float("nan"))
    valid_out = torch.zeros((grid.height, grid.width), dtype=torch.bool)

    def place(block):
        h, w = block.valid.shape
        region = out[:, block.y:block.y + h, block.x:block.x + w]
        assert torch.isnan(region).all(), "pixels emitted twice"
        region[:] = block.scores
        valid_out[block.y:block.y + h, block.x:block.x + w] = block.valid

    cols = len(grid.xs)
    for i, (_, x, y) in enumerate(grid.windows()):
        scores, valid = window(x, y)
        block = st_.add(x, y, scores, valid)
        if block is not None:
            place(block)
        if (i + 1) % cols == 0:
            place(st_.finish_row())
    assert not torch.isnan(out).any(), "some pixels were never emitted"
    return out, valid_out


@settings(max_examples=80, deadline=None)
@given(grid=grids, channels=st.integers(1, 3))
def test_stitcher_reproduces_any_position_dependent_field(grid, channels):
    """Every window reports the true value of a known field: the blend must return it exactly,
    everywhere (weights normalised, every pixel covered, emitted once, carried rows added back)."""
    w, h, t = grid.width, grid.height, grid.tile
    field = torch.arange(channels * max(h, t) * max(w, t), dtype=torch.float32)
    field = field.reshape(channels, max(h, t), max(w, t)) % 97
    out, valid = stitch(grid, channels,
                        lambda x, y: (field[:, y:y + t, x:x + t].clone(),
                                      torch.ones(t, t, dtype=torch.bool)))
    assert torch.allclose(out, field[:, :h, :w], atol=1e-3)
    assert valid.all()


@settings(max_examples=60, deadline=None)
@given(grid=grids, data=st.data())
def test_stitcher_marks_a_pixel_valid_when_any_window_saw_it(grid, data):
    t = grid.tile
    seen = torch.zeros((max(grid.height, t), max(grid.width, t)), dtype=torch.bool)
    masks = {}
    for _, x, y in grid.windows():
        m = torch.from_numpy(np.array(data.draw(st.lists(st.booleans(), min_size=t * t,
                                                         max_size=t * t))).reshape(t, t))
        masks[x, y] = m
        seen[y:y + t, x:x + t] |= m
    _, valid = stitch(grid, 1,
                      lambda x, y: (torch.zeros(1, t, t), masks[x, y]))
    assert torch.equal(valid, seen[:grid.height, :grid.width])


@pytest.mark.parametrize("height", [1200, 3000, 16384])
def test_stitcher_keeps_only_the_rows_window_rows_share(height):
    """The carry holds the rows neighbouring window rows share — about the overlap, not a tile."""
    tile, overlap, stride = 512, 64, 448
    grid = Grid(width=300, height=height, tile=tile, overlap=overlap)
    rows = Stitcher(grid, 6).carry_rows
    assert rows == tile - np.diff(grid.ys).min()
    span = height - tile
    assert rows <= overlap + stride ** 2 / (span + stride) + 1  # evenly spread rows


def test_stitcher_blends_disagreeing_windows_smoothly():
    """Windows that disagree (each reports its own index) blend without a step at the seam."""
    grid = Grid(width=112, height=64, tile=64, overlap=16)
    index = {x: float(i) for i, x in enumerate(grid.xs)}
    out, _ = stitch(grid, 1,
                    lambda x, y: (torch.full((1, 64, 64), index[x]),
                                  torch.ones(64, 64, dtype=torch.bool)))
    row = out[0, 0].numpy()
    assert row[0] == pytest.approx(0) and row[-1] == pytest.approx(1)
    assert (np.diff(row) >= -1e-6).all()
    assert np.abs(np.diff(row)).max() < 0.2  # a hard seam would jump by 1


def test_stitcher_rejects_windows_out_of_grid_order():
    grid = Grid(100, 100, 64, 16)
    st_ = Stitcher(grid, 1)
    window = torch.zeros(1, 64, 64), torch.ones(64, 64, dtype=torch.bool)
    with pytest.raises(ValueError):
        st_.add(0, grid.ys[1], *window)
    st_.add(0, 0, *window)
    with pytest.raises(ValueError):
        st_.finish_row()  # the row's second window is missing


@pytest.mark.parametrize("tile,overlap", [(64, 32), (64, 40), (0, 0), (64, -1)])
def test_bad_tiling_is_refused(tile, overlap):
    with pytest.raises(InputError):
        check_tiling(tile, overlap)


def test_tile_must_fit_the_model_multiple():
    with pytest.raises(InputError, match="multiple of 16"):
        check_tiling(100, 10, 16)


def test_numpy_stitcher_matches_the_torch_one():
    """Without torch (ONNX models) the stitcher keeps numpy arrays and blends identically."""
    grid = Grid(150, 110, 64, 16)
    rng = np.random.default_rng(0)
    windows = {(x, y): rng.random((3, 64, 64), dtype=np.float32) for _, x, y in grid.windows()}
    outputs = []
    for device in ("cpu", None):
        st_ = Stitcher(grid, 3, device)
        out = np.zeros((3, grid.height, grid.width), np.float32)
        for _, x, y in grid.windows():
            scores = windows[(x, y)] if device is None else torch.from_numpy(windows[(x, y)])
            valid = np.ones((64, 64), bool) if device is None else torch.ones(64, 64,
                                                                              dtype=torch.bool)
            block = st_.add(x, y, scores, valid)
            blocks = [block] if block is not None else []
            if x == grid.xs[-1]:
                blocks.append(st_.finish_row())
            for b in blocks:
                assert isinstance(b.scores, np.ndarray) == (device is None)
                h, w = b.scores.shape[1:]
                out[:, b.y:b.y + h, b.x:b.x + w] = np.asarray(b.scores)
        outputs.append(out)
    assert np.allclose(outputs[0], outputs[1], atol=1e-6)


def test_margin_weights_leave_window_edges_to_the_neighbours():
    w = ramp_weights(64, 24, margin=7)
    assert (w[:7] < 1e-5).all() and (w[-7:] < 1e-5).all() and w[32] == 1.0
    assert np.allclose(w[7:57], ramp_weights(50, 10))
    with pytest.raises(InputError, match="at least twice the 7 pixels"):
        check_tiling(64, 10, margin=7)
