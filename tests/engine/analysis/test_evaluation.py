import json

import numpy as np
import pytest

from engine.analysis.evaluation import evaluate
from engine.jobs import Cancelled, InputError
from engine.analysis.vectorize import vectorize
from tests.conftest import write_raster


@pytest.fixture
def pair(tmp_path, rng):
    ref = rng.integers(1, 4, (1, 60, 70)).astype(np.uint8)
    pred = ref.copy()
    flip = rng.random(ref.shape) < 0.2
    pred[flip] = rng.integers(1, 4, int(flip.sum()))
    pred[0, :5, :5] = 255  # prediction nodata: never counted
    return (write_raster(tmp_path / "pred.tif", pred, nodata=255),
            write_raster(tmp_path / "ref.tif", ref), pred[0], ref[0])


def test_matrix_matches_a_direct_count(tmp_path, pair):
    pred_path, ref_path, pred, ref = pair
    r = evaluate(pred_path, ref_path, tmp_path / "r.json", html_report=tmp_path / "r.html")
    keep = pred != 255
    expected = np.zeros((3, 3), int)
    np.add.at(expected, (ref[keep] - 1, pred[keep] - 1), 1)
    assert r["confusion_matrix"] == expected.tolist()
    assert r["overall_accuracy"] == pytest.approx(np.trace(expected) / expected.sum())
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["miou"] == pytest.approx(r["miou"])
    page = (tmp_path / "r.html").read_text()
    assert "Confusion matrix" in page and "Olofsson" in page and page.count("<tr>") > 9
    # area-based: mapped areas are the prediction's pixel counts times the pixel area (0.25 m²)
    mapped = [c["mapped_area"] for c in r["area_based"]["per_class"]]
    assert mapped == pytest.approx([(pred == v).sum() * 0.25 for v in (1, 2, 3)])


def test_polygon_reference_equals_raster_reference(tmp_path, pair):
    pred_path, ref_path, _, _ = pair
    polys = tmp_path / "ref.gpkg"
    vectorize(ref_path, polys)
    a = evaluate(pred_path, ref_path, tmp_path / "a.json")
    b = evaluate(pred_path, polys, tmp_path / "b.json", class_field="class_value")
    assert a["confusion_matrix"] == b["confusion_matrix"]


def test_reference_in_another_grid_is_aligned(tmp_path, rng):
    ref = np.kron(rng.integers(1, 3, (1, 10, 10)), np.ones((1, 8, 8))).astype(np.uint8)
    pred = write_raster(tmp_path / "p.tif", ref, res=0.5)
    coarse = write_raster(tmp_path / "r.tif", ref[:, ::2, ::2], res=1.0)  # same area, 2× pixels
    r = evaluate(pred, coarse, tmp_path / "r.json")
    assert r["overall_accuracy"] > 0.97


def test_bad_inputs_write_nothing(tmp_path, pair, rng):
    pred_path, ref_path, _, _ = pair
    far = write_raster(tmp_path / "far.tif", np.ones((1, 20, 20), np.uint8),
                       origin=(100000.0, 200000.0))
    with pytest.raises(InputError, match="does not overlap"):
        evaluate(pred_path, far, tmp_path / "x.json")
    multi = write_raster(tmp_path / "multi.tif", rng.integers(0, 9, (3, 20, 20)).astype(np.uint8))
    with pytest.raises(InputError, match="not a class raster"):
        evaluate(multi, ref_path, tmp_path / "x.json")
    with pytest.raises(Cancelled):
        evaluate(pred_path, ref_path, tmp_path / "x.json", cancelled=lambda: True)
    assert not (tmp_path / "x.json").exists()
