"""Structure-modality providers (``python -m engine derive``): grid, seams, DSM alignment, SAM."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_points
from scipy import ndimage

from engine.analysis import derive as D
from engine.jobs import Cancelled, InputError
from tests.conftest import write_raster


def _square_image(tmp_path, h=96, w=80, nodata=None):
    img = np.full((3, h, w), 40, np.uint8)
    img[:, 30:62, 20:52] = 200                      # bright square: rows 30..61, cols 20..51
    return write_raster(tmp_path / "rgb.tif", img, nodata=nodata, res=1.0)


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.profile, ds.descriptions


def _same_grid(a, b):
    with rasterio.open(a) as x, rasterio.open(b) as y:
        return (x.crs, x.transform, x.width, x.height) == (y.crs, y.transform, y.width, y.height)


def test_edges_trace_the_square_on_the_input_grid(tmp_path):
    image = _square_image(tmp_path)
    out = tmp_path / "edges.tif"
    seen = []
    summary = D.derive("edges", image, out, progress=lambda f, m: seen.append(f))
    assert summary["kind"] == "edges" and seen[-1] == 1.0
    assert _same_grid(image, out)
    data, profile, desc = _read(out)
    e = data[0]
    assert profile["dtype"] == "uint8" and profile["count"] == 1 and desc == ("edges",)
    border = np.zeros_like(e, bool)
    border[29:33, 19:53] = border[59:63, 19:53] = True     # top / bottom edges of the square
    border[29:63, 19:23] = border[29:63, 49:53] = True     # left / right edges
    assert e[border].mean() > 100
    assert e[40:52, 30:42].max() == 0                     # inside the square: flat
    assert e[:, 62:].max() < 5 and e[75:, :].max() < 5    # far background: flat
    strong = set(np.flatnonzero(e[:, 36] > 100).tolist())  # strong responses on column 36 …
    top, bottom = strong & set(range(27, 34)), strong & set(range(58, 65))
    assert top and bottom and strong == top | bottom      # … only at the square's top and bottom
    assert {29, 30} <= top and {61, 62} <= bottom


def test_edges_windowed_equals_whole_image(tmp_path):
    rng = np.random.default_rng(0)
    img = ndimage.gaussian_filter(rng.normal(128, 40, (3, 70, 90)), (0, 2, 2))
    image = write_raster(tmp_path / "noise.tif", np.clip(img, 0, 255).astype(np.uint8), res=1.0)
    whole, windowed = tmp_path / "whole.tif", tmp_path / "windowed.tif"
    D.derive_edges(image, whole, dtype="float32", sigma=1.5, tile=4096, rows=4096)
    D.derive_edges(image, windowed, dtype="float32", sigma=1.5, tile=24, rows=16)
    a, b = _read(whole)[0][0], _read(windowed)[0][0]
    assert np.array_equal(a, b)                           # no seams: identical, not just close
    with rasterio.open(image) as ds:
        lum = D.luminance(ds.read().astype(np.float32)) / 255.0
    reference = D.gradient_magnitude(lum, 1.5)           # scipy on the whole array, mode reflect
    assert np.allclose(a, reference, atol=1e-5)
    u8 = tmp_path / "u8.tif"
    D.derive_edges(image, u8, sigma=1.5, tile=24, rows=16)
    assert np.array_equal(_read(u8)[0][0],
                          np.round(np.minimum(reference * 4.0, 1) * 254).astype(np.uint8))


def test_edges_mark_invalid_input_as_nodata(tmp_path):
    img = np.full((3, 40, 40), 90, np.uint8)
    img[:, :, :5] = 0
    image = write_raster(tmp_path / "nd.tif", img, nodata=0, res=1.0)
    out = tmp_path / "e.tif"
    D.derive_edges(image, out)
    data, profile, _ = _read(out)
    assert profile["nodata"] == 255
    assert (data[0][:, :5] == 255).all() and (data[0][:, 5:] < 255).all()


def test_cancel_leaves_no_output(tmp_path):
    image = _square_image(tmp_path)
    out = tmp_path / "cancelled.tif"
    with pytest.raises(Cancelled):
        D.derive_edges(image, out, tile=16, rows=16, cancelled=lambda: True)
    assert not out.exists() and not list(tmp_path.glob(".cancelled*"))


def _plane_dsm(tmp_path):
    """A DSM in geographic coordinates (EPSG:4326), coarser than the image: a plane in lon/lat."""
    lon0, lat0, res = 15.0, 45.14, 2e-5                  # ≈ 1.6 × 2.2 m pixels
    h, w = 80, 60
    lons = lon0 + (np.arange(w) + 0.5) * res
    lats = lat0 - (np.arange(h) + 0.5) * res
    z = 100 + 20000 * (lons[None, :] - lon0) + 30000 * (lat0 - lats[:, None])
    path = tmp_path / "dsm_wgs84.tif"
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="float32",
                       crs="EPSG:4326", transform=from_origin(lon0, lat0, res, res),
                       nodata=-32768) as dst:
        dst.write(z.astype(np.float32)[None])
    return path, (lon0, lat0, res)


def test_dsm_from_another_crs_is_aligned_to_the_image_grid(tmp_path):
    dsm, (lon0, lat0, res) = _plane_dsm(tmp_path)
    # image grid: UTM 33N at 1 m, partly outside the DSM footprint
    (e0,), (n0,) = warp_points("EPSG:4326", "EPSG:32633", [lon0 + 10 * res], [lat0 - 10 * res])
    image = write_raster(tmp_path / "img.tif", np.zeros((3, 150, 120), np.uint8), crs="EPSG:32633",
                         origin=(e0, n0), res=1.0)
    out = tmp_path / "aligned.tif"
    D.derive("dsm", image, out, dsm=str(dsm), tile=50, rows=40)
    assert _same_grid(image, out)
    z, profile, desc = _read(out)
    z = z[0]
    assert profile["dtype"] == "float32" and profile["nodata"] == D.DSM_NODATA and desc == ("dsm",)
    rows, cols = np.mgrid[0:150:7, 0:120:7]
    es, ns = e0 + cols.ravel() + 0.5, n0 - rows.ravel() - 0.5
    lons, lats = warp_points("EPSG:32633", "EPSG:4326", es.tolist(), ns.tolist())
    lons, lats = np.asarray(lons), np.asarray(lats)
    expected = 100 + 20000 * (lons - lon0) + 30000 * (lat0 - lats)
    got = z[rows.ravel(), cols.ravel()]
    inside = (lons > lon0 + res) & (lons < lon0 + 59 * res) & (lats < lat0 - res) \
        & (lats > lat0 - 79 * res)
    assert inside.sum() > 50 and (~inside).sum() > 10
    assert np.allclose(got[inside], expected[inside], atol=0.05)
    outside = (lons > lon0 + 61 * res) | (lats < lat0 - 81 * res)
    assert outside.any() and (got[outside] == D.DSM_NODATA).all()


def test_ndsm_removes_the_ground_and_is_seamless(tmp_path):
    z = np.full((1, 90, 110), 250.0, np.float32) + np.linspace(0, 5, 110, dtype=np.float32)
    z[0, 30:50, 40:70] += 12.0                          # a 12 m building on a sloping ground
    dsm = write_raster(tmp_path / "dsm.tif", z, res=1.0)
    image = write_raster(tmp_path / "img.tif", np.zeros((3, 90, 110), np.uint8), res=1.0)
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    D.derive_dsm(image, a, dsm, ndsm=True, ndsm_window=41, tile=4096, rows=4096)
    D.derive_dsm(image, b, dsm, ndsm=True, ndsm_window=41, tile=32, rows=16)
    na, nb = _read(a)[0][0], _read(b)[0][0]
    assert np.array_equal(na, nb)
    assert _read(a)[2] == ("ndsm",)
    assert np.all(np.abs(na[35:45, 50:60] - 12.0) < 2.0)
    assert np.all(na[70:, :] < 2.0) and na.min() >= 0


def test_dsm_needs_a_dsm(tmp_path):
    image = _square_image(tmp_path)
    with pytest.raises(InputError, match="--dsm"):
        D.derive("dsm", image, tmp_path / "x.tif")
    far = write_raster(tmp_path / "far.tif", np.zeros((1, 10, 10), np.float32),
                       origin=(100000.0, 100000.0))
    with pytest.raises(InputError, match="does not overlap"):
        D.derive("dsm", image, tmp_path / "x.tif", dsm=str(far))


def test_sam_without_checkpoint_explains_the_fix(tmp_path):
    image = _square_image(tmp_path)
    with pytest.raises(InputError) as err:
        D.derive("sam", image, tmp_path / "sam.tif")
    msg = str(err.value)
    assert "--sam-checkpoint" in msg and "--kind edges" in msg
    with pytest.raises(InputError, match="does not exist"):
        D.derive("sam", image, tmp_path / "sam.tif", sam_checkpoint=str(tmp_path / "none.pth"))
    assert not (tmp_path / "sam.tif").exists()


def _whole_window_sam(path):
    """A tiny SAM-layout checkpoint whose masks cover the whole window with IoU score 1."""
    from engine.models.sam import CONFIGS
    from tests.engine.weights.published import random_tensors, sam_shapes
    c = CONFIGS["tiny"]
    state = random_tensors(sam_shapes(c.dim, c.depth, c.heads, c.global_blocks))
    for key in ["mask_decoder.output_upscaling.3.", "mask_decoder.iou_prediction_head.layers.2."] + \
            [f"mask_decoder.output_hypernetworks_mlps.{m}.layers.2." for m in range(4)]:
        state[key + "weight"].zero_()
        state[key + "bias"].fill_(1.0)
    torch.save(state, path)
    return path


def test_sam_provider_with_the_engine_sam(tmp_path):
    ckpt = _whole_window_sam(tmp_path / "weights.pth")      # the name says nothing: shapes do
    image = _square_image(tmp_path)
    out = tmp_path / "sam.tif"
    D.derive("sam", image, out, sam_checkpoint=str(ckpt), tile=64, halo=8, device="cpu",
             points_per_side=2)
    assert _same_grid(image, out)
    data, profile, desc = _read(out)
    assert profile["count"] == 2 and desc == ("sam_segments", "sam_boundaries")
    grey, edges = data
    assert grey.min() > 0 and edges.max() == 0              # one mask per window, no boundary
    with pytest.raises(InputError, match="not vit_b"):
        D.derive("sam", image, tmp_path / "b.tif", sam_checkpoint=str(ckpt), model_type="vit_b",
                 tile=64, device="cpu")


def test_automatic_mask_helpers():
    from engine.click.sam_masks import mask_boxes, nms, stability_scores
    logits = torch.full((2, 4, 4), -5.0)
    logits[0, 1:3, 1:3] = 5.0                                # crisp: stable
    logits[1, :, :] = 0.5                                    # between −1 and +1: unstable
    assert stability_scores(logits).tolist() == [1.0, 0.0]
    masks = torch.zeros(3, 8, 8, dtype=torch.bool)
    masks[0, 1:4, 2:6] = True
    masks[1, 1:4, 2:5] = True                                # overlaps mask 0 heavily
    masks[2, 6:8, 6:8] = True
    boxes = mask_boxes(masks)
    assert boxes[0].tolist() == [2, 1, 5, 3]
    assert nms(boxes, torch.tensor([0.9, 0.95, 0.5])) == [1, 2]


def test_cli_hooks(tmp_path, capsys):
    assert D.COMMAND == "derive" and D.HELP
    parser = argparse.ArgumentParser()
    D.add_arguments(parser)
    image = _square_image(tmp_path)
    out = tmp_path / "cli.tif"
    args = parser.parse_args(["--kind", "edges", "--input", str(image), "--output", str(out),
                              "--sigma", "0.8", "--dtype", "float32"])
    D.run(args)
    assert out.exists() and "wrote" in capsys.readouterr().out
    assert _read(out)[1]["dtype"] == "float32"


def test_command_line_entry_point(tmp_path, monkeypatch, capsys):
    import engine.__main__ as cli
    if "engine.analysis.derive" not in cli.COMMAND_MODULES:          # until the CLI registry lists it
        monkeypatch.setattr(cli, "COMMAND_MODULES", cli.COMMAND_MODULES + ("engine.analysis.derive",))
    image = _square_image(tmp_path)
    out = tmp_path / "main.tif"
    assert cli.main(["derive", "--kind", "edges", "--input", str(image), "--output", str(out)]) == 0
    assert _same_grid(image, out)
    assert cli.main(["derive", "--kind", "sam", "--input", str(image), "--output",
                     str(tmp_path / "s.tif")]) == 2
    assert "--sam-checkpoint" in capsys.readouterr().err
