import numpy as np
import pytest
import rasterio
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.inference.pipeline import predict
from engine.io.gsd import GsdPlan
from engine.io.rasters import WindowReader
from engine.io.resample import (ResampledWindowReader, input_tiling, interpolation_matrix,
                                scores_to_input_grid)
from engine.formats.modelfile import load_model, save_model
from engine.inference.tiling import Stitcher
from engine.inference.views import View
from tests.conftest import make_model, write_raster


def test_interpolation_matrix_rows_sum_to_one_and_identity_at_equal_size():
    assert np.allclose(interpolation_matrix(37, 37), np.eye(37))
    for n_out, n_in in ((10, 30), (30, 10), (171, 512)):
        m = interpolation_matrix(n_out, n_in)
        assert m.shape == (n_out, n_in) and (m >= 0).all()
        assert np.allclose(m.sum(1), 1)


def test_interpolation_keeps_a_ramp_in_place():
    """Pixel centres are aligned: a linear ramp stays the same ramp at another size."""
    n_in, n_out = 30, 90
    x_in = (np.arange(n_in) + 0.5) / n_in
    x_out = (np.arange(n_out) + 0.5) / n_out
    out = interpolation_matrix(n_out, n_in) @ x_in
    inner = slice(3, -3)
    assert np.allclose(out[inner], x_out[inner], atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(width=st.integers(5, 140), height=st.integers(5, 140), tile=st.sampled_from([16, 32, 48]),
       overlap=st.integers(0, 7), scale=st.floats(0.4, 3.0))
def test_resampled_windows_cover_every_output_pixel_once(width, height, tile, overlap, scale):
    size, ov = input_tiling(tile, overlap, scale)
    if size < 4:
        return
    view = View(GsdPlan(scale, 1.0, 1.0 / scale), tile, overlap, size, ov)
    grid = view.grid(width, height)
    forward = view.wrap(lambda x: torch.full((1, 2, tile, tile), 0.25) + x["v"])
    seen = np.zeros((height, width), np.int64)
    stitcher = Stitcher(grid, 2)
    blocks = []
    for _, x, y in grid.windows():
        scores = forward({"v": torch.zeros(1, 2, 1, 1)})[0]
        assert scores.shape == (2, size, size)
        block = stitcher.add(x, y, scores, torch.ones(size, size, dtype=torch.bool))
        if block is not None:
            blocks.append((block.x, block.y, block.scores.clone()))
        if x == grid.xs[-1]:
            b = stitcher.finish_row()
            blocks.append((b.x, b.y, b.scores.clone()))
    for bx, by, scores in blocks:
        h, w = scores.shape[1:]
        seen[by:by + h, bx:bx + w] += 1
        assert torch.allclose(scores, torch.tensor(0.25), atol=1e-5)
    assert (seen == 1).all()


def test_resampled_reader_at_equal_size_equals_plain_reader(tmp_path, rng):
    path = write_raster(tmp_path / "a.tif", rng.integers(0, 255, (3, 70, 90), dtype=np.uint8),
                        nodata=0)
    with rasterio.open(path) as ds:
        plain, resampled = WindowReader(ds, [1, 2, 3]), ResampledWindowReader(ds, [1, 2, 3], 32)
        for x, y in ((0, 0), (60, 40), (80, 65)):
            a, b = plain.read(x, y, 32), resampled.read(x, y, 32)
            assert np.array_equal(a.pixels, b.pixels)
            assert np.array_equal(a.valid, b.valid)
            assert np.array_equal(b.grid_valid, a.valid)


def test_resampled_reader_returns_network_sized_windows_and_input_grid_validity(tmp_path, rng):
    data = rng.integers(1, 255, (2, 50, 60), dtype=np.uint8)
    data[:, :, 55:] = 0  # nodata at the right edge
    path = write_raster(tmp_path / "a.tif", data, nodata=0)
    with rasterio.open(path) as ds:
        win = ResampledWindowReader(ds, [1, 2], 64).read(40, 30, 32)  # 2× upsampling, clipped
    assert win.pixels.shape == (2, 64, 64) and win.valid.shape == (64, 64)
    assert win.grid_valid.shape == (32, 32)
    assert win.grid_valid[:20, :15].all() and not win.grid_valid[:, 15:].any()  # 55.. is nodata
    assert not win.grid_valid[20:].any()  # beyond the raster
    assert win.valid[:40, :30].all() and not win.valid[:, 30:].any()


def _blocky_image(tmp_path, name, res, rng, factor):
    """A 4-band image of 8×8-pixel constant blocks (at 0.5 m) seen at ``res``."""
    base = rng.integers(0, 255, (4, 12, 12)).astype(np.uint8)
    fine = np.kron(base, np.ones((1, 8 // factor, 8 // factor), np.uint8))
    return write_raster(tmp_path / name, fine, res=res)


def test_pointwise_model_gives_the_same_classes_resampled_away_from_block_edges(tmp_path, rng):
    """A per-pixel model must not care about resampling: any shift or mis-scaled geometry in the
    resampled path would move class boundaries."""
    coarse = _blocky_image(tmp_path, "coarse.tif", 1.0, rng, 1)  # 96×96 px at 1 m
    model = make_model(tmp_path / "p.rsmodel", arch="test-pointwise", tile=32, overlap=8)
    lm = load_model(model)
    lm.card["gsd_m"] = 0.25  # the model reads the 1 m image at 0.25 m: 4× upsampling
    save_model(tmp_path / "p25.rsmodel", lm.card, lm.network)
    predict(tmp_path / "p25.rsmodel", coarse, tmp_path / "auto.tif", device="cpu")
    predict(tmp_path / "p25.rsmodel", coarse, tmp_path / "native.tif", device="cpu", gsd="native")
    with rasterio.open(tmp_path / "auto.tif") as a, rasterio.open(tmp_path / "native.tif") as n:
        auto, native = a.read(1), n.read(1)
    inner = np.zeros(96, bool)
    for i in range(12):
        inner[i * 8 + 1:i * 8 + 7] = True  # a 1-px margin inside each 8-px block
    interior = inner[:, None] & inner[None, :]
    assert np.array_equal(auto[interior], native[interior])
    assert (auto != native).any()  # the margins do differ: resampling really happened


def test_gsd_equal_to_the_models_gives_the_native_output(tmp_path, rng):
    img = write_raster(tmp_path / "in.tif", rng.integers(0, 255, (4, 90, 70), dtype=np.uint8))
    model = make_model(tmp_path / "m.rsmodel", base=4, depth=2, tile=32, overlap=8)
    predict(model, img, tmp_path / "a.tif", probabilities=tmp_path / "ap.tif", device="cpu",
            gsd="0.5")
    predict(model, img, tmp_path / "b.tif", probabilities=tmp_path / "bp.tif", device="cpu",
            gsd="native")
    for x, y in (("a.tif", "b.tif"), ("ap.tif", "bp.tif")):
        with rasterio.open(tmp_path / x) as a, rasterio.open(tmp_path / y) as b:
            assert np.array_equal(a.read(), b.read())


def test_predict_at_another_gsd_keeps_the_input_grid(tmp_path, rng):
    img = write_raster(tmp_path / "in.tif", rng.integers(0, 255, (4, 90, 70), dtype=np.uint8),
                       res=1.5)
    model = make_model(tmp_path / "m.rsmodel", base=4, depth=2, tile=32, overlap=8)
    lm = load_model(model)
    lm.card["gsd_m"] = 0.5
    save_model(model, lm.card, lm.network)
    result = predict(model, img, tmp_path / "c.tif", device="cpu")
    assert result["gsd_scale"] == pytest.approx(3.0)
    assert any("3.0× coarser" in n for n in result["notes"])
    assert sum(result["class_fractions"].values()) == pytest.approx(1.0)
    with rasterio.open(img) as src, rasterio.open(tmp_path / "c.tif") as out:
        assert (out.width, out.height, out.transform) == (src.width, src.height, src.transform)
        assert (out.read(1) != 255).all()


@pytest.mark.parametrize("tile,size", [(64, 128), (64, 150), (48, 61)])
def test_enlarged_scores_match_the_interpolation_matrix(tile, size):
    scores = np.random.default_rng(size).random((2, 3, tile, tile), dtype=np.float32)
    m = interpolation_matrix(size, tile)
    expected = m @ scores @ m.T
    got = scores_to_input_grid(lambda x: torch.from_numpy(scores), tile, size)({})
    assert got.shape == (2, 3, size, size)
    assert np.abs(got.numpy() - expected).max() < 1e-5


def _half_gsd_model(tmp_path):
    model = make_model(tmp_path / "m.rsmodel", base=4, depth=2, tile=32, overlap=8)
    lm = load_model(model)
    lm.card["gsd_m"] = 1.0  # the images below are 0.5 m: twice as fine as the model's data
    save_model(model, lm.card, lm.network)
    return model


def test_finer_input_is_blended_at_the_model_gsd_then_brought_to_its_grid(tmp_path, rng):
    """A 0.5 m input for a 1 m model costs what the 1 m image would: the same windows, the
    same blend, the classes and probabilities then repeated onto the input's pixels."""
    fine = write_raster(tmp_path / "fine.tif", rng.integers(0, 255, (4, 130, 110), np.uint8))
    with rasterio.open(fine) as ds:
        coarse = ds.read(out_shape=(4, 65, 55), resampling=rasterio.enums.Resampling.average)
    coarse_path = write_raster(tmp_path / "coarse.tif", coarse, res=1.0)
    model = _half_gsd_model(tmp_path)
    r_fine = predict(model, fine, tmp_path / "f.tif", probabilities=tmp_path / "fp.tif",
                     device="cpu")
    r_coarse = predict(model, coarse_path, tmp_path / "c.tif", probabilities=tmp_path / "cp.tif",
                       device="cpu")
    assert r_fine["windows"] == r_coarse["windows"]
    assert (r_fine["width"], r_fine["height"]) == (110, 130)
    for f, c in (("f.tif", "c.tif"), ("fp.tif", "cp.tif")):
        with rasterio.open(tmp_path / f) as a, rasterio.open(tmp_path / c) as b, \
                rasterio.open(fine) as src:
            assert (a.width, a.height, a.transform) == (src.width, src.height, src.transform)
            expected = b.read()[:, np.arange(130) // 2][:, :, np.arange(110) // 2]
            assert np.array_equal(a.read(), expected)


def test_finer_input_keeps_its_own_nodata_pixel_for_pixel(tmp_path, rng):
    data = rng.integers(1, 255, (4, 130, 110), np.uint8)
    yy, xx = np.mgrid[:130, :110]
    hole = ((xx + 2 * yy) < 97) | (rng.random((130, 110)) < 0.2)  # finer than the model's pixels
    data[:, hole] = 0
    fine = write_raster(tmp_path / "fine.tif", data, nodata=0)
    model = _half_gsd_model(tmp_path)
    predict(model, fine, tmp_path / "f.tif", probabilities=tmp_path / "fp.tif", device="cpu")
    with rasterio.open(tmp_path / "f.tif") as c, rasterio.open(tmp_path / "fp.tif") as p:
        classes, probs = c.read(1), p.read()
    assert np.array_equal(classes == 255, hole)
    assert np.array_equal((probs == 255).all(0), hole) and (probs != 255).any(0)[~hole].all()
