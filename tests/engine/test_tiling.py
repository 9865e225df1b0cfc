import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.jobs import InputError
from engine.tiling import Grid, Stitcher, check_tiling, ramp_weights, window_starts

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


@settings(max_examples=60, deadline=None)
@given(grid=grids, channels=st.integers(1, 3))
def test_stitcher_reproduces_any_position_dependent_field(grid, channels):
    """Every window reports the true value of a known field: the blend must return it exactly,
    everywhere (weights normalised, every pixel covered, rows emitted once and in order)."""
    w, h, t = grid.width, grid.height, grid.tile
    field = torch.arange(channels * max(h, t) * max(w, t), dtype=torch.float32)
    field = field.reshape(channels, max(h, t), max(w, t)) % 97
    st_ = Stitcher(grid, channels)
    out = torch.full((channels, h, w), float("nan"))
    valid_out = torch.zeros((h, w), dtype=torch.bool)
    cols = len(grid.xs)
    for i, (_, x, y) in enumerate(grid.windows()):
        st_.add(x, y, field[:, y:y + t, x:x + t], torch.ones(t, t, dtype=torch.bool))
        if (i + 1) % cols == 0:
            strip = st_.finish_row()
            n = strip.scores.shape[1]
            assert torch.isnan(out[:, strip.y:strip.y + n]).all(), "rows emitted twice"
            out[:, strip.y:strip.y + n] = strip.scores
            valid_out[strip.y:strip.y + n] = strip.valid
    assert not torch.isnan(out).any(), "some rows were never emitted"
    assert torch.allclose(out, field[:, :h, :w], atol=1e-3)
    assert valid_out.all()


def test_stitcher_blends_disagreeing_windows_smoothly():
    """Windows that disagree (each reports its own index) blend without a step at the seam."""
    grid = Grid(width=112, height=64, tile=64, overlap=16)
    st_ = Stitcher(grid, 1)
    for i, (_, x, y) in enumerate(grid.windows()):
        st_.add(x, y, torch.full((1, 64, 64), float(i)), torch.ones(64, 64, dtype=torch.bool))
    row = st_.finish_row().scores[0, 0].numpy()
    assert row[0] == pytest.approx(0) and row[-1] == pytest.approx(1)
    assert (np.diff(row) >= -1e-6).all()
    assert np.abs(np.diff(row)).max() < 0.2  # a hard seam would jump by 1


def test_stitcher_rejects_window_of_a_closed_row():
    grid = Grid(100, 100, 64, 16)
    st_ = Stitcher(grid, 1)
    with pytest.raises(ValueError):
        st_.add(0, grid.ys[1], torch.zeros(1, 64, 64), torch.ones(64, 64, dtype=torch.bool))


@pytest.mark.parametrize("tile,overlap", [(64, 32), (64, 40), (0, 0), (64, -1)])
def test_bad_tiling_is_refused(tile, overlap):
    with pytest.raises(InputError):
        check_tiling(tile, overlap)


def test_tile_must_fit_the_model_multiple():
    with pytest.raises(InputError, match="multiple of 16"):
        check_tiling(100, 10, 16)
