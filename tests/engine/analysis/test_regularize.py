"""Building regularisation: right angles, parallel sides, notches gone, holes by area, shared
walls without overlaps, and the tolerance checks."""
from __future__ import annotations

import math

import numpy as np
import pytest
from rasterio.features import rasterize, shapes
from shapely import affinity
from shapely.geometry import Polygon, box, shape

from engine.analysis.fitted import departure, fitted_polygon
from engine.analysis.regularize import Buildings, check_tolerance, regularize_polygon
from engine.jobs import InputError


def pixel_polygons(*footprints, size=120):
    """The 4-connected pixel polygons of the footprints burnt onto a grid (pixel units)."""
    arr = rasterize([(f, i + 1) for i, f in enumerate(footprints)], out_shape=(size, size),
                    dtype="uint8")
    return [shape(g) for g, v in shapes(arr, mask=arr > 0, connectivity=4)]


def corner_angles(poly):
    pts = np.asarray(poly.exterior.coords)[:-1]
    a, b = np.roll(pts, 1, axis=0) - pts, np.roll(pts, -1, axis=0) - pts
    cos = (a * b).sum(1) / np.hypot(*a.T) / np.hypot(*b.T)
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def iou(a, b):
    return a.intersection(b).area / a.union(b).area


@pytest.mark.parametrize("angle", [0, 17, 38])
def test_rotated_l_shape_gets_right_angles_and_few_vertices(angle):
    truth = Polygon([(0, 0), (50, 0), (50, 20), (25, 20), (25, 40), (0, 40)])
    truth = affinity.translate(affinity.rotate(truth, angle, origin=(0, 0)), 40, 15)
    (raw,) = pixel_polygons(truth)
    reg = regularize_polygon(raw, 2.0, 4.0)
    assert reg.is_valid
    assert len(reg.exterior.coords) - 1 == 6
    assert np.allclose(corner_angles(reg) % 180, 90, atol=0.5)
    assert iou(reg, truth) > 0.97
    assert iou(reg, truth) > iou(raw, truth) - 0.01
    assert len(raw.exterior.coords) >= 5 * (len(reg.exterior.coords) - 1) or angle == 0


def test_notch_below_the_tolerance_goes_and_a_wide_one_stays():
    small = box(10, 10, 60, 40).difference(box(30, 38, 32, 40))    # 2×2 notch
    wide = box(10, 10, 60, 40).difference(box(25, 30, 45, 40))     # 20×10 courtyard bite
    (raw_small,) = pixel_polygons(small)
    (raw_wide,) = pixel_polygons(wide)
    assert len(regularize_polygon(raw_small, 3.0, 0).exterior.coords) - 1 == 4
    reg = regularize_polygon(raw_wide, 3.0, 0)
    assert len(reg.exterior.coords) - 1 == 8
    assert reg.area == pytest.approx(wide.area, rel=0.02)


def test_holes_are_filled_or_kept_by_area():
    building = box(10, 10, 80, 80).difference(box(20, 20, 23, 23)).difference(box(40, 40, 65, 65))
    (raw,) = pixel_polygons(building)
    reg = regularize_polygon(raw, 2.0, fill_holes=50.0)
    assert len(reg.interiors) == 1
    assert Polygon(reg.interiors[0]).area == pytest.approx(25 * 25, rel=0.05)
    assert len(regularize_polygon(raw, 2.0, fill_holes=1000.0).interiors) == 0


@pytest.mark.parametrize("gap", [0, 1])
def test_neighbours_share_a_wall_and_never_overlap(gap):
    left = affinity.rotate(box(10, 10, 40, 50), 12, origin=(40, 30))
    right = affinity.rotate(box(40 + gap, 12, 70, 48), 12, origin=(40, 30))
    a, b = pixel_polygons(left, right)
    buildings = Buildings(tol=2.5, fill_holes=0.0, pixel_m=0.5)
    out = list(buildings.add(a)) + list(buildings.add(b))
    assert len(out) == 2 and all(p.is_valid for p in out)
    assert out[0].intersection(out[1]).area < 1e-6
    assert out[0].intersection(out[1]).length > 20     # a shared wall, not a gap
    alone = regularize_polygon(b, 2.5, 0.0)  # on its own: an overlap or a gap at the wall
    assert alone.intersection(out[0]).area > 0.1 or alone.intersection(out[0]).length < 20


def test_buildings_far_above_the_frontier_are_forgotten():
    buildings = Buildings(tol=2.0, fill_holes=0.0, pixel_m=1.0)
    for poly in pixel_polygons(box(5, 5, 25, 20), box(5, 80, 25, 95)):
        list(buildings.add(poly))
    buildings.forget_above(60)
    assert [p.bounds[1] for p in buildings.kept.values()] == [80.0]
    assert all(k in buildings.kept for keys in buildings.cells.values() for k in keys)


def test_tolerance_outside_the_usable_range_is_a_sentence():
    with pytest.raises(InputError, match=r"below the pixel size \(0.5 m\); use at least 0.5 m"):
        check_tolerance(0.2, 0.5)
    buildings = Buildings(tol=30.0, fill_holes=0.0, pixel_m=0.5)
    for poly in pixel_polygons(box(5, 5, 25, 20), box(40, 40, 60, 58)):
        list(buildings.add(poly))
    with pytest.raises(InputError, match=r"above half the size of the buildings .*use between "
                                         r"0.5 m \(the pixel size\) and"):
        buildings.finish()
    ok = Buildings(tol=2.0, fill_holes=0.0, pixel_m=0.5)
    list(ok.add(pixel_polygons(box(5, 5, 25, 20))[0]))
    ok.finish()
    assert math.isfinite(ok.tol)


def test_buildings_smaller_than_a_tolerance_square_are_left_out():
    buildings = Buildings(tol=3.0, fill_holes=0.0, pixel_m=1.0)
    speck, house = pixel_polygons(box(5, 5, 7, 9), box(20, 20, 40, 35))  # 8 px² and 300 px²
    assert list(buildings.add(speck)) == [] and buildings.dropped == 1
    assert len(list(buildings.add(house))) == 1 and buildings.dropped == 1


def test_a_building_that_is_not_rectilinear_keeps_its_own_walls():
    # a trapezoid with 60° and 120° corners: right angles would move its slanted walls
    truth = affinity.translate(Polygon([(0, 0), (60, 0), (45, 26), (15, 26)]), 30, 40)
    (raw,) = pixel_polygons(truth)
    reg = regularize_polygon(raw, 2.0, 4.0)
    assert reg.is_valid and len(reg.exterior.coords) - 1 == 4
    assert sorted(np.round(corner_angles(reg) / 10) * 10) == [60, 60, 120, 120]
    assert iou(reg, truth) > 0.98
    assert len(raw.exterior.coords) - 1 >= 5 * 4


@pytest.mark.parametrize("angle", [10, 27, 45])
def test_fitted_walls_run_through_the_middle_of_the_staircase(angle):
    truth = affinity.translate(affinity.rotate(box(0, 0, 40, 30), angle, origin=(0, 0)), 40, 20)
    (raw,) = pixel_polygons(truth)
    fitted = fitted_polygon(raw, 2.0, 0.0)
    through_corners = raw.simplify(2.0, preserve_topology=True)  # Douglas-Peucker
    assert len(fitted.exterior.coords) - 1 == 4
    assert departure(fitted, raw) < min(0.25, departure(through_corners, raw))
    assert iou(fitted, truth) > max(iou(raw, truth), iou(through_corners, truth) + 0.01)
