"""The building-polygon benchmark's measures: the staircase a polygon loses against its own
pixels, the rectangle floor of a label, and image/label crops that stay on one grid."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.features import rasterize
from shapely import affinity
from shapely.geometry import box

import bench.polygons as bp


@pytest.fixture(autouse=True)
def work(tmp_path, monkeypatch):
    monkeypatch.setattr(bp, "WORK", tmp_path)
    return tmp_path


def reference(labels: np.ndarray, pixel: float = 0.5) -> bp.Reference:
    return bp.Reference(bp.class_raster("label", labels, 1, pixel))


def test_a_pixel_aligned_building_has_no_staircase():
    labels = np.zeros((60, 80), np.uint8)
    labels[10:30, 20:55] = 1
    ref = reference(labels)
    assert ref.rectangle_floor() == pytest.approx(0.0, abs=1e-12)
    assert ref.staircase_loss([ref.outline]) == pytest.approx(0.0, abs=1e-12)
    assert ref.pixel_iou([ref.outline]) == 1.0


def test_a_turned_rectangle_loses_what_the_staircase_floor_says():
    # the same 40×50 px rectangle turned by 37° as in staircase_floor, on a 0.5 m grid
    truth_px = affinity.translate(affinity.rotate(box(0, 0, 40, 50), 37, origin=(0, 0)), 100, 20)
    labels = rasterize([(truth_px, 1)], out_shape=(300, 300), dtype="uint8")
    ref = reference(labels)
    t = ref.transform
    truth = affinity.affine_transform(truth_px, [t.a, t.b, t.d, t.e, t.xoff, t.yoff])
    (floor,) = [r["iou_loss"] for r in bp.staircase_floor()
                if (r["width_px"], r["height_px"], r["angle"]) == (40, 50, 37)]
    assert ref.staircase_loss([truth]) == pytest.approx(floor, rel=1e-6)
    assert 0.01 < floor < 0.04
    # the label's own rectangle is its pixels' minimum rotated rectangle: a little larger
    assert 0.5 * floor < ref.rectangle_floor() < 2 * floor


def test_crops_of_an_ungeoreferenced_image_and_its_label_share_one_grid(tmp_path):
    data = np.arange(3 * 20 * 30, dtype=np.uint16).reshape(3, 20, 30)
    src = tmp_path / "plain.tif"
    with rasterio.open(src, "w", driver="GTiff", width=30, height=20, count=3,
                       dtype="uint16") as dst:
        dst.write(data)
    out = bp.crop(src, (10, 4, 12, 8), tmp_path / "crop.tif", 0.25)
    with rasterio.open(out) as ds:
        assert (ds.read() == data[:, 4:12, 10:22]).all()
        assert ds.transform.c == pytest.approx(2600000.0 + 10 * 0.25)
        assert ds.transform.f == pytest.approx(1200000.0 - 4 * 0.25)
        assert ds.transform.a == 0.25 and ds.crs is not None


def test_ignored_label_pixels_are_nodata_not_background():
    labels = np.array([[0, 2, 2], [3, 2, 0]], np.uint8)
    with rasterio.open(bp.class_raster("ignore", labels, 2, 1.0, ignore=0)) as ds:
        assert ds.read(1).tolist() == [[255, 1, 1], [0, 1, 255]]
        assert ds.nodata == 255


def test_fitted_walls_trade_vertices_for_fidelity():
    truth_px = affinity.translate(affinity.rotate(box(0, 0, 40, 50), 37, origin=(0, 0)), 100, 20)
    ref = reference(rasterize([(truth_px, 1)], out_shape=(300, 300), dtype="uint8"))
    curve = ref.fitted_curve()
    fine, coarse = curve["0.5"], curve["2.0"]
    assert fine["iou_loss"] < coarse["iou_loss"] and fine["vertex_cut"] < coarse["vertex_cut"]
    # at two pixels the turned rectangle is four fitted walls: close to the staircase floor
    assert coarse["vertex_cut"] > 10
    assert coarse["iou_loss"] < 2 * ref.staircase_loss(
        [affinity.affine_transform(truth_px, [0.5, 0, 0, -0.5, 2600000.0, 1200000.0])])


def test_overlap_area_counts_each_shared_part_once():
    squares = [box(0, 0, 2, 2), box(1, 1, 3, 3), box(1.5, 1.5, 2.5, 2.5), box(5, 5, 6, 6)]
    # pairs: first–second 1, first–third 0.25, second–third 1; the far square touches none
    assert bp.overlap_area(squares) == pytest.approx(2.25)
    assert bp.overlap_area([box(0, 0, 1, 1), box(1, 0, 2, 1)]) == 0.0   # sharing an edge only
    assert bp.overlap_area([]) == 0.0
