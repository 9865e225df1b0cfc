"""Which classes get which outline: the card's shapes (through the raster tags or --model) and
the overrides; bad class names and tolerances are sentences."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from osgeo import ogr
from rasterio.features import rasterize
from rasterio.transform import from_origin
from shapely import affinity, wkb
from shapely.geometry import box

from engine.analysis.outlines import resolve_shapes
from engine.analysis.vectorize import vectorize
from engine.formats.card import default_card, validate_card
from engine.jobs import InputError, ModelFileError
from tests.conftest import ROOT

NAMES = {1: "ground", 2: "building", 3: "tree"}


def test_overrides_apply_over_the_card_shapes():
    card = {2: "building", 3: "natural"}
    assert resolve_shapes(card, NAMES) == card
    assert resolve_shapes(card, NAMES, as_is="all") == {}
    assert resolve_shapes(card, NAMES, as_is="tree") == {2: "building"}
    assert resolve_shapes({}, NAMES, regularize="Building", smooth="3,ground") == \
        {2: "building", 3: "natural", 1: "natural"}
    with pytest.raises(InputError, match=r"--regularize: the raster has no class 'roof'; its "
                                         r"classes are 1 ground, 2 building, 3 tree"):
        resolve_shapes({}, NAMES, regularize="roof")


def test_new_cards_name_shapes_and_bad_shapes_are_refused():
    card = default_card("unet", 3, 6)
    assert {c["name"]: c["shape"] for c in card["classes"]} == {
        "impervious": "as-is", "building": "building", "low vegetation": "natural",
        "tree": "natural", "car": "as-is", "clutter": "as-is"}
    card["classes"][0]["shape"] = "round"
    with pytest.raises(ModelFileError, match="shape must be one of building, natural, as-is"):
        validate_card(card)


def town(tmp_path):
    """Rotated buildings in a field with a tree blob; the raster tags carry the card shapes."""
    a = np.ones((160, 160), np.uint8)
    yy, xx = np.mgrid[:160, :160]
    a[(yy - 110) ** 2 + (xx - 110) ** 2 < 35 ** 2] = 3
    houses = [affinity.rotate(box(10 + 45 * i, 15, 40 + 45 * i, 45), 10 + 9 * i,
                              origin=(25 + 45 * i, 30)) for i in range(3)]
    a[rasterize([(h, 1) for h in houses], out_shape=a.shape) > 0] = 2
    classes = [{"value": v, "name": n, "color": [0, 0, 0], **({"shape": s} if s else {})}
               for v, n, s in ((1, "ground", None), (2, "building", "building"),
                               (3, "tree", "natural"))]
    path = tmp_path / "town.tif"
    with rasterio.open(path, "w", driver="GTiff", width=160, height=160, count=1,
                       dtype="uint8", crs="EPSG:2056", nodata=255,
                       transform=from_origin(2600000.0, 1200000.0, 0.5, 0.5)) as dst:
        dst.write(a, 1)
        dst.update_tags(1, RS_SEG_CLASSES=json.dumps(classes))
    return path


def polygons(path):
    ds = ogr.Open(str(path))
    return [(f["class_name"], f["shape"], wkb.loads(bytes(f.GetGeometryRef().ExportToWkb())))
            for f in ds.GetLayer(0)]


def test_vectorize_draws_each_class_by_its_shape(tmp_path):
    src = town(tmp_path)
    shaped = vectorize(src, tmp_path / "shaped.gpkg")
    assert shaped["shapes"] == {"building": "building", "tree": "natural"}
    pixel = vectorize(src, tmp_path / "pixel.gpkg", as_is="all")
    assert pixel["shapes"] == {}
    got, raw = polygons(tmp_path / "shaped.gpkg"), polygons(tmp_path / "pixel.gpkg")
    houses = [g for n, s, g in got if n == "building"]
    assert len(houses) == 3 and all(s == "building" for n, s, _ in got if n == "building")
    assert all(len(h.exterior.coords) == 5 for h in houses)
    raw_houses = [g for n, _, g in raw if n == "building"]
    assert sum(len(h.exterior.coords) for h in raw_houses) > 5 * 4 * 3
    tree = [g for n, _, g in got if n == "tree"]
    ground = [g for n, _, g in got if n == "ground"]
    assert tree[0].intersection(ground[0]).area < 1e-6           # shared border
    assert tree[0].intersection(ground[0]).length > 50
    assert len(tree[0].exterior.coords) < len([g for n, _, g in raw if n == "tree"][0]
                                              .exterior.coords)


def test_bad_tolerance_and_class_names_on_the_command_line(tmp_path):
    src = town(tmp_path)

    def engine(*args):
        return subprocess.run([sys.executable, "-m", "engine", "vectorize", "--input", str(src),
                               "--output", str(tmp_path / "o.gpkg"), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)

    r = engine("--tolerance", "0.2")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--tolerance 0.2 m is below the pixel size (0.5 m); use at least 0.5 m" in r.stderr
    r = engine("--tolerance", "40")
    assert r.returncode == 2 and "--tolerance 40 m is above half the size of the buildings" \
        in r.stderr
    r = engine("--regularize", "roof")
    assert r.returncode == 2
    assert "--regularize: the raster has no class 'roof'; its classes are 1 ground, " \
        "2 building, 3 tree" in r.stderr
    r = engine("--as-is", "lake")
    assert r.returncode == 2 and "--as-is: the raster has no class 'lake'" in r.stderr
    assert not (tmp_path / "o.gpkg").exists()
    r = engine("--smooth", "ground", "--as-is", "tree")
    assert r.returncode == 0, r.stderr
    assert "ground" in r.stdout and "natural" in r.stdout


def test_outline_options_are_checked_against_a_card_before_any_pixel(tmp_path):
    """What a caller that predicts first checks up front: the card's classes and the image's
    pixel size (0.5 m here), with the sentences vectorize gives."""
    from engine.analysis.outlines import check_outline_options
    from tests.conftest import write_raster
    image = write_raster(tmp_path / "image.tif", np.zeros((3, 8, 8), np.uint8), res=0.5)
    classes = default_card("unet", 3, 6)["classes"]
    assert check_outline_options(classes, image, smooth="car", tolerance=1.0) == \
        {2: "building", 3: "natural", 4: "natural", 5: "natural"}
    with pytest.raises(InputError, match=r"--regularize: the raster has no class 'roof'"):
        check_outline_options(classes, image, regularize="roof")
    with pytest.raises(InputError, match=r"^Outline tolerance 0.2 m is below the pixel size "
                                         r"\(0.5 m\)"):
        check_outline_options(classes, image, tolerance=0.2,
                              option_names={"tolerance": "Outline tolerance"})
    with pytest.raises(InputError, match=r"--fill-holes must not be negative"):
        check_outline_options(classes, image, fill_holes=-1.0)
    assert check_outline_options(classes, image, as_is="all", tolerance=0.2) == {}
