"""vectorize: block-wise polygonisation equals whole-raster polygonisation, GeoPackage output."""
from __future__ import annotations

import argparse
import os
from collections import defaultdict

import numpy as np
import pytest
import rasterio
from osgeo import ogr
from rasterio.features import shapes
from rasterio.transform import from_origin
from shapely import wkb
from shapely.geometry import shape

from engine.jobs import Cancelled, InputError, OutputError
from engine.analysis.vectorize import COMMAND, HELP, add_arguments, run, vectorize

PIXEL = 2.0
TRANSFORM = from_origin(500000.0, 5000000.0, PIXEL, PIXEL)
NAMES = {0: "impervious", 1: "background", 2: "field", 3: "water", 4: "car"}  # 5: untagged


def write_raster(path, arr, crs="EPSG:32633", transform=TRANSFORM, nodata=255, tags=None,
                 dtype=None):
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1],
                       count=arr.shape[0], dtype=dtype or arr.dtype, crs=crs,
                       transform=transform, nodata=nodata) as dst:
        dst.write(arr)
        if tags:
            dst.update_tags(1, **tags)
    return path


def scene():
    """70×50 class raster: background with holes, a many-block field holding a water hole, a
    U whose arms meet only in a lower block, corner-touching pixels, single pixels, nodata and
    a noisy patch across block edges."""
    a = np.ones((50, 70), np.uint8)
    a[5:40, 3:60] = 2                          # spans 3×4 blocks of 16 px
    a[15:25, 20:30] = 3                        # hole in the field, crosses row 16
    a[28:38, 40:42] = 5                        # U: left arm crosses row 32
    a[28:38, 46:48] = 5                        #    right arm
    a[35:38, 40:48] = 5                        #    base (in the lower block row)
    a[15, 47] = 5                              # touches (16, 48) at a block corner only
    a[16, 48] = 5
    a[2, 2] = a[2, 66] = a[47, 68] = 4         # single pixels
    a[44:49, 45:52] = 3                        # crosses column 48
    a[42:50, 0:20] = 255                       # nodata across column 16
    rng = np.random.default_rng(7)
    a[41:50, 22:44] = rng.integers(0, 4, (9, 22))  # noise across column 32 and row 48
    return a


def reference(arr, transform=TRANSFORM, nodata=255):
    """Whole-raster polygon areas per class (map units), sorted."""
    out = defaultdict(list)
    for geom, value in shapes(arr, mask=arr != nodata, transform=transform):
        out[int(value)].append(shape(geom).area)
    return {k: sorted(v) for k, v in out.items()}


def read_gpkg(path, layer=None):
    ds = ogr.Open(str(path))
    assert ds is not None
    lyr = ds.GetLayerByName(layer) if layer else ds.GetLayer(0)
    rows = []
    for feat in lyr:
        geom = wkb.loads(bytes(feat.GetGeometryRef().ExportToWkb()))
        rows.append({"value": feat.GetField("class_value"), "name": feat.GetField("class_name"),
                     "area": feat.GetField("area_m2"), "geom": geom})
    srs = lyr.GetSpatialRef()
    epsg = srs.GetAuthorityCode(None) if srs is not None else None
    return rows, lyr.GetName(), epsg


@pytest.fixture(scope="module")
def class_raster(tmp_path_factory):
    path = tmp_path_factory.mktemp("vec") / "classes.tif"
    tags = {f"CLASS_{v}": n for v, n in NAMES.items()}
    return write_raster(path, scene(), tags=tags)


@pytest.mark.parametrize("block", [16, 7, 1024])
def test_blockwise_equals_whole_raster_polygonisation(class_raster, tmp_path, block):
    out = tmp_path / "polys.gpkg"
    result = vectorize(class_raster, out, block=block)
    rows, layer, epsg = read_gpkg(out)
    assert layer == "polys" and epsg == "32633"
    arr = scene()
    ref = reference(arr)
    got = defaultdict(list)
    for r in rows:
        assert r["geom"].is_valid and r["geom"].geom_type == "Polygon"
        assert r["area"] == pytest.approx(r["geom"].area, rel=1e-9)
        got[r["value"]].append(r["area"])
    assert set(got) == set(ref) == {0, 1, 2, 3, 4, 5}
    for value, areas in ref.items():
        assert len(got[value]) == len(areas), value
        np.testing.assert_allclose(sorted(got[value]), areas, rtol=1e-9)
        # total area = pixel count × pixel area
        assert sum(got[value]) == pytest.approx((arr == value).sum() * PIXEL * PIXEL)
    assert result["features"] == len(rows) == sum(len(v) for v in ref.values())
    assert result["output"] == str(out)


def test_known_polygons_and_class_names(class_raster, tmp_path):
    out = tmp_path / "named.gpkg"
    result = vectorize(class_raster, out, block=16)
    rows, _, _ = read_gpkg(out)
    names = {r["value"]: r["name"] for r in rows}
    assert names == {**NAMES, 5: "5"}
    assert result["classes"]["car"] == 3 and result["classes"]["5"] == 3  # U + 2 corner pixels
    u = [r for r in rows if r["value"] == 5 and r["area"] > 4 * PIXEL ** 2]
    assert len(u) == 1 and u[0]["area"] == pytest.approx((20 + 20 + 12) * PIXEL ** 2)
    field = max((r for r in rows if r["value"] == 2), key=lambda r: r["area"])
    assert len(field["geom"].interiors) >= 2  # the water hole and the U
    # background: one polygon with the field as a hole (cut by nodata and noise elsewhere)
    bg = max((r for r in rows if r["value"] == 1), key=lambda r: r["area"])
    assert len(bg["geom"].interiors) >= 1
    # no superfluous vertices where block edges were: the water hole is a plain rectangle
    water = [r for r in rows if r["value"] == 3 and r["area"] == pytest.approx(100 * PIXEL ** 2)]
    assert len(water) == 1 and len(water[0]["geom"].exterior.coords) == 5


def test_min_area_drops_small_polygons(class_raster, tmp_path):
    out = tmp_path / "big.gpkg"
    result = vectorize(class_raster, out, min_area=3 * PIXEL ** 2, block=16)
    rows, _, _ = read_gpkg(out)
    ref = reference(scene())
    kept = sum(1 for areas in ref.values() for a in areas if a >= 3 * PIXEL ** 2)
    assert len(rows) == result["features"] == kept
    assert all(r["area"] >= 3 * PIXEL ** 2 for r in rows)
    assert "car" not in result["classes"]


def test_simplify_gives_valid_smaller_polygons(class_raster, tmp_path):
    exact = read_gpkg(vectorize(class_raster, tmp_path / "a.gpkg", block=16)["output"])[0]
    simple = read_gpkg(vectorize(class_raster, tmp_path / "b.gpkg", block=16,
                                 simplify=1.5 * PIXEL)["output"])[0]
    assert len(simple) == len(exact)
    assert all(r["geom"].is_valid for r in simple)
    assert sum(len(r["geom"].exterior.coords) for r in simple) < \
        sum(len(r["geom"].exterior.coords) for r in exact)
    assert all(r["area"] == pytest.approx(r["geom"].area) for r in simple)


def test_geographic_raster_reports_square_metres(tmp_path):
    path = write_raster(tmp_path / "geo.tif", np.ones((10, 10), np.uint8), crs="EPSG:4326",
                        transform=from_origin(10.0, 0.0005, 0.0001, 0.0001))
    result = vectorize(path, tmp_path / "geo.gpkg")
    rows, _, epsg = read_gpkg(tmp_path / "geo.gpkg")
    assert result["features"] == 1 and epsg == "4326"
    # 0.001° × 0.001° at the equator ≈ 111.32 m × 110.57 m
    assert rows[0]["area"] == pytest.approx(111.32 * 110.57, rel=2e-3)


def test_cancel_leaves_no_file(class_raster, tmp_path):
    out = tmp_path / "cancelled.gpkg"
    calls = {"n": 0}

    def cancelled():
        calls["n"] += 1
        return calls["n"] > 5

    with pytest.raises(Cancelled):
        vectorize(class_raster, out, block=16, cancelled=cancelled)
    assert os.listdir(tmp_path) == []
    with pytest.raises(Cancelled):
        vectorize(class_raster, out, block=16, cancelled=lambda: True)
    assert os.listdir(tmp_path) == []


def test_progress_is_reported(class_raster, tmp_path):
    seen = []
    vectorize(class_raster, tmp_path / "p.gpkg", block=16, progress=lambda f, m: seen.append(f))
    assert seen[-1] == 1.0 and seen == sorted(seen) and len(seen) > 10


def test_bad_inputs_and_outputs(class_raster, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        vectorize(tmp_path / "missing.tif", tmp_path / "o.gpkg")
    text = tmp_path / "notes.tif"
    text.write_text("hello")
    with pytest.raises(InputError, match="not a raster"):
        vectorize(text, tmp_path / "o.gpkg")
    floats = write_raster(tmp_path / "f.tif", np.zeros((8, 8), np.float32), nodata=None)
    with pytest.raises(InputError, match="integer"):
        vectorize(floats, tmp_path / "o.gpkg")
    rgb = write_raster(tmp_path / "rgb.tif", np.zeros((3, 8, 8), np.uint8), nodata=None)
    with pytest.raises(InputError, match="3 bands"):
        vectorize(rgb, tmp_path / "o.gpkg")
    with pytest.raises(OutputError, match="does not exist"):
        vectorize(class_raster, tmp_path / "no" / "such" / "o.gpkg")
    with pytest.raises(OutputError, match=r"^--output o\.shp must be a GeoPackage .*\.gpkg"):
        vectorize(class_raster, tmp_path / "o.shp")
    assert not (tmp_path / "o.gpkg").exists()


def test_sentences_name_the_parameters_as_the_caller_does(class_raster, tmp_path):
    out = tmp_path / "o.gpkg"
    with pytest.raises(InputError, match=r"^--fill-holes must not be negative \(got -2\)"):
        vectorize(class_raster, out, fill_holes=-2.0)
    form = {"fill_holes": "Fill building holes below", "output": "Class polygons"}
    with pytest.raises(InputError, match=r"^Fill building holes below must not be negative"):
        vectorize(class_raster, out, fill_holes=-2.0, option_names=form)
    with pytest.raises(OutputError, match=r"^Class polygons o\.shp must be a GeoPackage"):
        vectorize(class_raster, tmp_path / "o.shp", option_names=form)
    with pytest.raises(InputError, match=r"^--min-area must not be negative"):  # not renamed
        vectorize(class_raster, out, min_area=-1.0, option_names=form)


def test_overwrites_existing_output_and_handles_wide_types(tmp_path):
    arr = np.zeros((20, 30), np.int32)
    arr[3:17, 4:25] = 70000
    src = write_raster(tmp_path / "wide.tif", arr, nodata=None, dtype="uint32")
    out = tmp_path / "wide.gpkg"
    out.write_text("old")
    result = vectorize(src, out, block=8)
    rows, _, _ = read_gpkg(out)
    assert result["features"] == 2
    assert sorted(r["value"] for r in rows) == [0, 70000]


def test_cli_arguments_and_run(class_raster, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog=COMMAND, description=HELP)
    add_arguments(parser)
    out = tmp_path / "cli.gpkg"
    args = parser.parse_args(["--input", str(class_raster), "--output", str(out),
                              "--min-area", "10", "--simplify", "0", "--block", "16"])
    assert (args.min_area, args.simplify, args.block) == (10.0, 0.0, 16)
    run(args)
    assert out.exists()
    printed = capsys.readouterr().out
    assert "cli.gpkg" in printed and "polygons" in printed
