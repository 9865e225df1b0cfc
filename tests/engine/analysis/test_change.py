import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject

from engine.analysis.change import detect_change, otsu_threshold
from engine.jobs import Cancelled, InputError, ModelFileError
from engine.sample import make_sample
from tests.conftest import ROOT, make_model, write_raster


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_sample(tmp_path_factory.mktemp("scene"), size=256, seed=3)


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds.profile


def change_iou(pred, truth):
    p, t = pred == 1, truth == 1
    return (p & t).sum() / max((p | t).sum(), 1)


def test_otsu_separates_two_modes():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(1, 0.2, 5000), rng.normal(5, 0.5, 500)])
    t = otsu_threshold(v)
    assert (v[:5000] < t).mean() > 0.99 and (v[5000:] >= t).mean() > 0.99


def test_cva_finds_the_known_changes(tmp_path, scene):
    out, gpkg = tmp_path / "cva.tif", tmp_path / "cva.gpkg"
    r = detect_change("cva", scene["t1"], scene["t2"], out, polygons=gpkg, device="cpu")
    pred, prof = read(out)
    truth, tprof = read(scene["change"])
    assert prof["transform"] == tprof["transform"] and prof["crs"] == tprof["crs"]
    assert set(np.unique(pred)) <= {0, 1}
    assert change_iou(pred, truth) > 0.5
    assert r["changed_fraction"] == pytest.approx((pred == 1).mean())
    from osgeo import ogr
    source = ogr.Open(str(gpkg))  # keep the datasource alive while its layer is used
    layer = source.GetLayer()
    assert layer.GetFeatureCount() > 0
    assert {f.GetField("class_name") for f in layer} == {"change"}


def test_after_image_in_another_crs_and_resolution_is_aligned(tmp_path, scene):
    """t2 reprojected to EPSG:3857 at another resolution is warped back onto t1's grid: the
    aligned pixels match the original t2 (a known pattern ends up where it should)."""
    import contextlib
    from engine.analysis.change import _dates
    moved = tmp_path / "t2_3857.tif"
    with rasterio.open(scene["t2"]) as src:
        tr, w, h = calculate_default_transform(src.crs, "EPSG:3857", src.width, src.height,
                                               *src.bounds, resolution=0.3)
        prof = src.profile | {"crs": "EPSG:3857", "transform": tr, "width": w, "height": h,
                              "tiled": False}
        prof.pop("blockxsize", None), prof.pop("blockysize", None)
        with rasterio.open(moved, "w", **prof) as dst:
            for b in range(1, src.count + 1):
                reproject(rasterio.band(src, b), rasterio.band(dst, b), resampling=Resampling.cubic)
        original = src.read(1).astype(float)
    with contextlib.ExitStack() as stack:
        g1, g2 = _dates(scene["t1"], moved, stack)
        assert g1.crs == src.crs and g2.crs == src.crs
        back = g2.read(1).astype(float)
    inner = (slice(16, -16), slice(16, -16))
    assert back.shape == original.shape
    corr = np.corrcoef(back[inner].ravel(), original[inner].ravel())[0, 1]
    assert corr > 0.95
    shifted = np.corrcoef(back[inner].ravel(), np.roll(original, 3, axis=1)[inner].ravel())[0, 1]
    assert corr > shifted + 0.05  # aligned, not off by a few pixels
    out = tmp_path / "aligned.tif"
    detect_change("cva", scene["t1"], moved, out, device="cpu")
    truth, _ = read(scene["change"])
    assert change_iou(read(out)[0], truth) > 0.4


def test_partial_overlap_gives_the_intersection_and_nodata_holes_propagate(tmp_path, rng):
    t1 = rng.integers(1, 200, (3, 100, 120)).astype(np.uint8)
    t2 = t1.copy()
    t2[:, 10:20, 10:20] = 0  # a nodata hole in the after image
    a = write_raster(tmp_path / "a.tif", t1, nodata=0)
    b = write_raster(tmp_path / "b.tif", t2[:, :, 40:], nodata=0, origin=(500020.0, 5000000.0))
    out = tmp_path / "c.tif"
    detect_change("cva", a, b, out, device="cpu")
    c, prof = read(out)
    assert c.shape == (100, 80)  # t1's grid over the intersection (columns 40..119)
    assert prof["transform"].c == pytest.approx(500020.0)
    hole = np.zeros((100, 120), bool)
    hole[10:20, 10:20] = True
    assert (c[hole[:, 40:]] == 255).all()


def test_change_model_and_from_to_products(tmp_path, scene):
    cd = make_model(tmp_path / "cd.rsmodel", arch="fcsiamdiff", bands=4, classes=2, base=4,
                    depth=2, tile=64, overlap=16)
    seg = make_model(tmp_path / "seg.rsmodel", bands=4, classes=6, base=4, depth=2)
    out, prob, ft = tmp_path / "c.tif", tmp_path / "p.tif", tmp_path / "ft.tif"
    r = detect_change(cd, scene["t1"], scene["t2"], out, probabilities=prob,
                      segmentation_model=seg, from_to=ft, device="cpu", batch_size=3)
    change, _ = read(out)
    codes, fprof = read(ft)
    p, _ = read(prob)
    assert set(np.unique(change)) <= {0, 1}
    assert ((p >= 127) == (change == 1)).mean() > 0.99
    assert ((codes == 0) == (change == 0)).all()  # from-to only where changed
    assert codes.max() <= 36 and fprof["dtype"] == "uint8"
    rows = list(csv.DictReader(open(r["from_to_table"])))
    assert sum(int(row["pixels"]) for row in rows) == int((change == 1).sum())
    js = json.loads(open(str(r["from_to_table"])[:-4] + ".json").read())
    assert len(js["rows"]) == len(rows)
    for row in rows:
        assert int(row["pixels"]) == int((codes == int(row["code"])).sum())


def test_post_classification_comparison_marks_class_changes(tmp_path, scene):
    seg = make_model(tmp_path / "seg.rsmodel", bands=4, classes=6, base=4, depth=2)
    out, ft = tmp_path / "pcc.tif", tmp_path / "pcc_ft.tif"
    detect_change("pcc", scene["t1"], scene["t2"], out, segmentation_model=seg, from_to=ft,
                  device="cpu")
    change, _ = read(out)
    codes, _ = read(ft)
    decoded_from, decoded_to = (codes - 1) // 6, (codes - 1) % 6
    assert ((codes > 0) == (change == 1)).all()
    assert (decoded_from[codes > 0] != decoded_to[codes > 0]).all()


def test_bad_change_inputs_write_nothing(tmp_path, scene, rng):
    seg = make_model(tmp_path / "seg.rsmodel", bands=4, classes=6, base=4, depth=2)
    cd = make_model(tmp_path / "cd.rsmodel", arch="fcsiamdiff", bands=4, classes=2, base=4, depth=2)
    out = tmp_path / "out.tif"
    with pytest.raises(ModelFileError, match="segmentation model but a change model"):
        detect_change(seg, scene["t1"], scene["t2"], out, device="cpu")
    with pytest.raises(ModelFileError, match="change model but a segmentation model"):
        detect_change("cva", scene["t1"], scene["t2"], out, segmentation_model=cd, device="cpu")
    three = write_raster(tmp_path / "three.tif", rng.integers(0, 255, (3, 64, 64), dtype=np.uint8))
    with pytest.raises(InputError, match="different band counts"):
        detect_change("cva", scene["t1"], three, out, device="cpu")
    u16 = write_raster(tmp_path / "u16.tif", rng.integers(0, 255, (4, 64, 64)).astype("uint16"))
    with pytest.raises(InputError, match="different data types"):
        detect_change("cva", scene["t1"], u16, out, device="cpu")
    far = write_raster(tmp_path / "far.tif", rng.integers(0, 255, (4, 64, 64), dtype=np.uint8),
                       origin=(100000.0, 100000.0))
    with pytest.raises(InputError, match="does not overlap"):
        detect_change("cva", scene["t1"], far, out, device="cpu")
    with pytest.raises(Cancelled):
        detect_change(cd, scene["t1"], scene["t2"], out, device="cpu", cancelled=lambda: True)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_tta_makes_a_change_model_flip_equivariant(tmp_path, rng):
    """Averaged over flips, flipping both dates flips the change probability (one window); a
    random network alone is not symmetric."""
    import torch
    from engine.formats.modelfile import load_model, save_model
    cd = make_model(tmp_path / "cd.rsmodel", arch="fcsiamdiff", bands=4, classes=2, base=4,
                    depth=2, tile=64, overlap=16)
    m = load_model(cd)
    with torch.no_grad():
        m.network.decoder.head.weight.mul_(100)
        m.network.decoder.head.bias.zero_()
    save_model(cd, m.card, m.network)
    dates = rng.integers(1, 255, (2, 4, 64, 64), dtype=np.uint8)
    paths = {}
    for name, flip in (("", False), ("f", True)):
        for i, d in enumerate(dates):
            paths[name + str(i)] = write_raster(tmp_path / f"{name}t{i}.tif",
                                                d[..., ::-1].copy() if flip else d)
    probs = {}
    for tta in ("none", "flips"):
        for name in ("", "f"):
            out = tmp_path / f"p{name}{tta}.tif"
            detect_change(cd, paths[name + "0"], paths[name + "1"], tmp_path / f"c{name}{tta}.tif",
                          probabilities=out, device="cpu", tta=tta)
            probs[name + tta] = read(out)[0].astype(int)
    assert np.abs(probs["fflips"][:, ::-1] - probs["flips"]).max() <= 1
    assert np.abs(probs["fnone"][:, ::-1] - probs["none"]).max() > 10


def test_cli_change(tmp_path, scene):
    r = subprocess.run([sys.executable, "-m", "engine", "change", "--t1", str(scene["t1"]),
                        "--t2", str(scene["t2"]), "--output", str(tmp_path / "c.tif")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "% changed" in r.stdout
