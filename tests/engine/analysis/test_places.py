"""``engine places``: the review list as polygons, without the places already checked."""
import numpy as np
import pytest
from osgeo import ogr

from engine.__main__ import main
from engine.analysis.places import review_places
from engine.inference.uncertainty import NODATA
from engine.jobs import InputError, OutputError
from tests.conftest import write_raster
from tests.engine.training.refine_helpers import ORIGIN, RES, box, corrections


def _scene(tmp_path, rng):
    """A 256² uncertainty raster with four unsure cells of 64², most unsure first: A at
    column 128 row 64, B at 0/0, C at 192/192, D at 64/192; and the image it came from, of
    one appearance (one group: the list follows the uncertainty alone)."""
    data = rng.integers(0, 40, (256, 256))
    for value, (col, row) in zip((220, 200, 180, 160), ((128, 64), (0, 0), (192, 192),
                                                        (64, 192))):
        data[row:row + 64, col:col + 64] = value
    unc = write_raster(tmp_path / "u.tif", data[None].astype(np.uint8), nodata=NODATA,
                       origin=ORIGIN, res=RES)
    image = write_raster(tmp_path / "image.tif", np.full((3, 256, 256), 90, np.uint8),
                         origin=ORIGIN, res=RES)
    return unc, image


def _windows(places):
    return [p.window for p in places]


def test_the_most_unsure_places_come_first(tmp_path, rng):
    unc, image = _scene(tmp_path, rng)
    places = review_places(unc, image, count=4)
    assert set(_windows(places)) == {(128, 64, 64, 64), (0, 0, 64, 64), (192, 192, 64, 64),
                                     (64, 192, 64, 64)}


def test_every_kind_of_place_in_the_image_gets_its_share(tmp_path, rng):
    """A quarter of the image looks different and the model is sure there: one place in four
    is still checked there (its most unsure), where the uncertainty alone sends none."""
    cells = rng.integers(100, 140, (4, 4))
    cells[2:, 2:] = 20
    cells[3, 3] = 60
    unc = write_raster(tmp_path / "u.tif", np.kron(cells, np.ones((64, 64)))[None].astype(np.uint8),
                       nodata=NODATA, origin=ORIGIN, res=RES)
    look = np.full((3, 256, 256), 40, np.uint8)
    look[:, 128:, 128:] = 220
    image = write_raster(tmp_path / "image.tif", look, origin=ORIGIN, res=RES)
    shared = _windows(review_places(unc, image, count=4))
    assert (192, 192, 64, 64) in shared
    assert sum(col >= 128 and row >= 128 for col, row, _, _ in shared) == 1
    from engine.analysis.unsure import unsure_places
    assert all(col < 128 or row < 128 for col, row, _, _ in _windows(unsure_places(unc, count=4,
                                                                              spread=0)))


def test_corrected_and_reviewed_places_are_not_listed_again(tmp_path, rng):
    unc, image = _scene(tmp_path, rng)
    fixes = corrections(tmp_path / "c.gpkg",
                        [(box(128, 64, 192, 96), 1),   # half of A: checked
                         (box(64, 192, 70, 256), 2)],  # a tenth of D: still to check
                        reviewed=[box(20, 20, 40, 40)])  # B's centre: checked
    left = _windows(review_places(unc, image, corrections=fixes, count=4))
    assert (128, 64, 64, 64) not in left and (0, 0, 64, 64) not in left
    assert left[:2] == [(192, 192, 64, 64), (64, 192, 64, 64)]
    # reviewed places from another file instead of the GeoPackage's own layer
    other = corrections(tmp_path / "r.gpkg", [], reviewed=[box(192, 192, 256, 256)])
    again = _windows(review_places(unc, image, corrections=fixes, reviewed=other, count=2))
    assert again == [(0, 0, 64, 64), (64, 192, 64, 64)]


def test_the_places_are_written_as_ranked_squares(tmp_path, rng):
    unc, image = _scene(tmp_path, rng)
    out = tmp_path / "places.gpkg"
    places = review_places(unc, image, out, count=3)
    ds = ogr.Open(str(out))
    layer = ds.GetLayer(0)
    rows = [(f.GetField("rank"), round(f.GetField("unsure"), 4), f.GetGeometryRef().GetEnvelope())
            for f in layer]
    assert layer.GetSpatialRef().GetAuthorityCode(None) == "32633"
    ds = None
    assert rows == [(p.rank, round(p.uncertainty, 4),
                     (p.bounds[0], p.bounds[2], p.bounds[1], p.bounds[3])) for p in places]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["image.tif", "places.gpkg", "u.tif"]


def test_the_command_prints_the_list(tmp_path, rng, capsys):
    unc, image = _scene(tmp_path, rng)
    x0, y1 = ORIGIN[0] + 128 * RES, ORIGIN[1]
    extent = f"{ORIGIN[0]},{ORIGIN[1] - 128 * RES},{x0},{y1}"  # the top-left quarter: B only
    assert main(["places", "--uncertainty", str(unc), "--image", str(image), "--count", "1",
                 "--extent", extent, "--output", str(tmp_path / "p.gpkg")]) == 0
    out = capsys.readouterr().out
    assert f"  1.  79 % unsure  {ORIGIN[0]:.2f} {ORIGIN[1] - 32:.2f} {ORIGIN[0] + 32:.2f} " \
           f"{ORIGIN[1]:.2f}" in out
    assert "wrote" in out and (tmp_path / "p.gpkg").exists()


def test_bad_input_is_named(tmp_path, rng):
    unc, image = _scene(tmp_path, rng)
    with pytest.raises(InputError, match="image.tif is not an uncertainty raster.*--uncertainty"):
        review_places(image, image)
    with pytest.raises(OutputError, match="must be a GeoPackage"):
        review_places(unc, image, tmp_path / "p.shp")
    with pytest.raises(InputError, match="not on the grid of the uncertainty raster"):
        other = write_raster(tmp_path / "small.tif", np.zeros((3, 32, 32), np.uint8))
        review_places(unc, other)
