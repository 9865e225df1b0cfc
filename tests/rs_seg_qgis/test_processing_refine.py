"""``rs_seg:refine_model`` (and ``segment``'s uncertainty output) through processing.run."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from qgis.core import QgsProcessingException

from engine.formats.modelfile import read_card
from tests.engine.training.refine_helpers import box, corrections, scene

from .test_processing import _clear_leaked_frames  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.qgis


def run(alg, params):
    import processing
    return processing.run(f"rs_seg:{alg}", params)


def _refine(image, parent, gpkg, tmp_path, **more):
    """refine_model's parameters for a one-second round on the test scene."""
    return {"INPUT": str(image), "MODEL": str(parent),
            "CORRECTIONS": f"{gpkg}|layername=corrections", "CLASS_FIELD": "class",
            "TIME_BUDGET": 1, "DEVICE": "cpu", "OUTPUT_MODEL": str(tmp_path / "r.rsmodel"),
            **more}


def test_segment_uncertainty_then_refine_repredict_and_compare(provider, tmp_path):
    image, parent = scene(tmp_path)
    seg = run("segment", {"INPUT": str(image), "MODEL": str(parent), "DEVICE": "cpu",
                          "OUTPUT": str(tmp_path / "p0.tif"),
                          "OUTPUT_UNCERTAINTY": str(tmp_path / "u0.tif")})
    with rasterio.open(seg["OUTPUT_UNCERTAINTY"]) as u:
        assert u.nodata == 255 and u.read(1).max() <= 254
    gpkg = corrections(tmp_path / "c.gpkg", [(box(4, 4, 40, 40), 1), (box(50, 50, 90, 90), 2),
                                             (box(4, 50, 40, 90), 1), (box(50, 4, 90, 40), 2)],
                       reviewed=[box(40, 40, 50, 50)])
    result = run("refine_model", {
        "INPUT": str(image), "MODEL": str(parent),
        "CORRECTIONS": f"{gpkg}|layername=corrections", "CLASS_FIELD": "class",
        "REVIEWED": f"{gpkg}|layername=reviewed", "PREDICTION": seg["OUTPUT"],
        "UNCERTAINTY": seg["OUTPUT_UNCERTAINTY"], "TIME_BUDGET": 2, "DEVICE": "cpu",
        "OUTPUT_MODEL": str(tmp_path / "r1.rsmodel"), "OUTPUT": str(tmp_path / "p1.tif"),
        "OUTPUT_UNCERTAINTY": str(tmp_path / "u1.tif"),
        "OUTPUT_DIFFERENCE": str(tmp_path / "d1.tif")})
    lineage = read_card(result["OUTPUT_MODEL"])["lineage"]
    assert result["ROUND"] == lineage["round"] == 1 and lineage["corrections"] == 4
    assert lineage["confirmed_pixels"] > 0
    assert result["HELD_OUT_ACCURACY"] == lineage["scores"]["held_out"]["accuracy"]
    assert result["CHANGED_M2"] is not None and result["CHANGED_M2"] >= 0
    for key in ("OUTPUT", "OUTPUT_UNCERTAINTY", "OUTPUT_DIFFERENCE"):
        with rasterio.open(result[key]) as ds:
            assert ds.count == 1


def test_a_class_the_model_lacks_is_a_sentence(provider, tmp_path):
    image, parent = scene(tmp_path)
    gpkg = corrections(tmp_path / "c.gpkg", [(box(4, 4, 40, 40), 9)])
    with pytest.raises(QgsProcessingException, match="--init-head new"):
        run("refine_model", _refine(image, parent, gpkg, tmp_path))
    assert not (tmp_path / "r.rsmodel").exists()


def test_a_difference_without_the_previous_classes_is_refused_before_training(
        provider, tmp_path, monkeypatch):
    import engine.training.refine as refine_module
    trained = []
    monkeypatch.setattr(refine_module, "refine", lambda *a, **k: trained.append(a))
    image, parent = scene(tmp_path)
    gpkg = corrections(tmp_path / "c.gpkg", [(box(4, 4, 40, 40), 1)])
    with pytest.raises(QgsProcessingException, match="previous round's class raster"):
        run("refine_model", _refine(image, parent, gpkg, tmp_path,
                                    OUTPUT=str(tmp_path / "p1.tif"),
                                    OUTPUT_DIFFERENCE=str(tmp_path / "d.tif")))
    assert trained == []  # no two-minute round spent, then lost with the refused output


def test_refine_and_re_predict_only_the_extent(provider, tmp_path):
    from tests.engine.training.refine_helpers import ORIGIN, RES
    image, parent = scene(tmp_path)
    seg = run("segment", {"INPUT": str(image), "MODEL": str(parent), "DEVICE": "cpu",
                          "OUTPUT": str(tmp_path / "p0.tif"),
                          "OUTPUT_UNCERTAINTY": str(tmp_path / "u0.tif")})
    gpkg = corrections(tmp_path / "c.gpkg", [(box(4, 4, 40, 40), 1), (box(50, 50, 90, 90), 2)])
    # columns 16..63, rows 8..39, as xmin,xmax,ymin,ymax [CRS] like the map canvas gives it
    x0, x1 = ORIGIN[0] + 16 * RES, ORIGIN[0] + 64 * RES
    y0, y1 = ORIGIN[1] - 40 * RES, ORIGIN[1] - 8 * RES
    result = run("refine_model", {
        "INPUT": str(image), "MODEL": str(parent),
        "CORRECTIONS": f"{gpkg}|layername=corrections", "CLASS_FIELD": "class",
        "PREDICTION": seg["OUTPUT"], "UNCERTAINTY": seg["OUTPUT_UNCERTAINTY"],
        "TIME_BUDGET": 2, "DEVICE": "cpu", "EXTENT": f"{x0},{x1},{y0},{y1} [EPSG:32633]",
        "OUTPUT_MODEL": str(tmp_path / "r1.rsmodel"), "OUTPUT": str(tmp_path / "p1.tif"),
        "OUTPUT_UNCERTAINTY": str(tmp_path / "u1.tif"),
        "OUTPUT_DIFFERENCE": str(tmp_path / "d1.tif")})
    with rasterio.open(seg["OUTPUT"]) as a, rasterio.open(result["OUTPUT"]) as b, \
            rasterio.open(result["OUTPUT_DIFFERENCE"]) as d:
        old, new = a.read(1), b.read(1)
        assert (b.width, b.height) == (a.width, a.height)    # the previous round, updated
        assert (d.width, d.height) == (48, 32)               # the difference: the extent only
    outside = np.ones(old.shape, bool)
    outside[8:40, 16:64] = False
    assert (new[outside] == old[outside]).all()
    changed = int((new[~outside] != old[~outside]).sum())
    assert result["CHANGED_M2"] == pytest.approx(changed * RES * RES)


def test_start_from_the_parent_or_afresh(provider, tmp_path):
    from engine.training.refine_start import STARTS
    from rs_seg_qgis.processing import refine_model
    assert refine_model.STARTS == STARTS  # the plugin's copy of the engine's choices
    image, parent = scene(tmp_path)
    gpkg = corrections(tmp_path / "c.gpkg", [(box(4, 4, 40, 40), 1), (box(50, 50, 90, 90), 2)])
    for start in ("parent", "fresh"):
        out = tmp_path / f"from-{start}.rsmodel"
        result = run("refine_model", _refine(image, parent, gpkg, tmp_path, START=start,
                                             OUTPUT_MODEL=str(out)))
        assert read_card(result["OUTPUT_MODEL"])["lineage"]["start"] == start
