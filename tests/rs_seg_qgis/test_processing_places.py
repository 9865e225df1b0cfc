"""``rs_seg:review_places`` through processing.run: the engine's list, as a layer."""
from __future__ import annotations

import pytest
from osgeo import ogr

from engine.analysis.places import review_places
from tests.engine.training.refine_helpers import ORIGIN, RES, box, corrections, scene

from .test_processing import _clear_leaked_frames  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.qgis


def run(alg, params):
    import processing
    return processing.run(f"rs_seg:{alg}", params)


def _rows(path):
    ds = ogr.Open(str(path))
    rows = [(f.GetField("rank"), f.GetGeometryRef().GetEnvelope()) for f in ds.GetLayer(0)]
    ds = None
    return rows


def test_segment_then_list_the_places_left_to_check(provider, tmp_path):
    image, model = scene(tmp_path)
    seg = run("segment", {"INPUT": str(image), "MODEL": str(model), "DEVICE": "cpu",
                          "OUTPUT": str(tmp_path / "p0.tif"),
                          "OUTPUT_UNCERTAINTY": str(tmp_path / "u0.tif")})
    gpkg = corrections(tmp_path / "c.gpkg", [(box(0, 0, 32, 32), 1)],
                       reviewed=[box(32, 32, 64, 64)])
    result = run("review_places", {
        "UNCERTAINTY": seg["OUTPUT_UNCERTAINTY"], "INPUT": str(image),
        "PREDICTION": seg["OUTPUT"], "CORRECTIONS": f"{gpkg}|layername=corrections",
        "REVIEWED": f"{gpkg}|layername=reviewed", "COUNT": 9, "CELL_SIZE": 32,
        "OUTPUT": str(tmp_path / "places.gpkg")})
    rows = _rows(result["OUTPUT"])
    # nine cells of 32² on the 96² scene, less the corrected one and the reviewed one
    assert result["PLACES"] == len(rows) == 7
    assert [rank for rank, _ in rows] == list(range(1, 8))
    corners = {(round((x0 - ORIGIN[0]) / RES), round((ORIGIN[1] - y1) / RES))
               for _, (x0, _x1, _y0, y1) in rows}
    assert (0, 0) not in corners and (32, 32) not in corners
    engine_list = review_places(seg["OUTPUT_UNCERTAINTY"], image, prediction=seg["OUTPUT"],
                                corrections=gpkg, count=9, cell_px=32)
    assert [(p.rank, (p.bounds[0], p.bounds[2], p.bounds[1], p.bounds[3]))
            for p in engine_list] == rows


def test_only_the_extent_and_the_engine_defaults(provider, tmp_path):
    from engine.analysis import unsure
    from rs_seg_qgis.processing import review_places as alg
    assert (alg.PLACES, alg.PLACE_PX) == (unsure.PLACES, unsure.PLACE_PX)  # the plugin's copies
    image, model = scene(tmp_path)
    seg = run("segment", {"INPUT": str(image), "MODEL": str(model), "DEVICE": "cpu",
                          "OUTPUT": "TEMPORARY_OUTPUT",
                          "OUTPUT_UNCERTAINTY": str(tmp_path / "u0.tif")})
    x1, y0 = ORIGIN[0] + 48 * RES, ORIGIN[1] - 48 * RES  # the top-left 48², as the canvas gives it
    result = run("review_places", {
        "UNCERTAINTY": seg["OUTPUT_UNCERTAINTY"], "INPUT": str(image), "CELL_SIZE": 16,
        "EXTENT": f"{ORIGIN[0]},{x1},{y0},{ORIGIN[1]} [EPSG:32633]",
        "OUTPUT": str(tmp_path / "places.gpkg")})
    rows = _rows(result["OUTPUT"])
    assert len(rows) == 9  # the extent holds nine cells of 16²; the default asks for ten
    assert all(x1_ <= x1 + 1e-6 and y0_ >= y0 - 1e-6 for _, (_x0, x1_, y0_, _y1) in rows)


def test_an_output_that_is_no_geopackage_is_named_as_on_the_form(provider, tmp_path):
    from qgis.core import QgsProcessingException
    image, model = scene(tmp_path)
    seg = run("segment", {"INPUT": str(image), "MODEL": str(model), "DEVICE": "cpu",
                          "OUTPUT": "TEMPORARY_OUTPUT",
                          "OUTPUT_UNCERTAINTY": str(tmp_path / "u0.tif")})
    with pytest.raises(QgsProcessingException, match="Places to check places.shp must be a "
                                                     "GeoPackage"):
        run("review_places", {"UNCERTAINTY": seg["OUTPUT_UNCERTAINTY"], "INPUT": str(image),
                              "OUTPUT": str(tmp_path / "places.shp")})
    assert not (tmp_path / "places.shp").exists()
