"""Polygon label layers: reading class fields and rasterising onto grids and windows."""
from __future__ import annotations

import numpy as np
import pytest
from osgeo import ogr, osr
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import transform_geom
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from shapely.geometry import box, mapping, shape

from engine.io.vectors import (PolygonLabels, rasterize_polygons, read_polygon_labels,
                               vector_bounds)
from engine.jobs import InputError

UTM = "EPSG:32633"
ORIGIN = (500000.0, 5000000.0)
PIXEL = 10.0
GRID = from_origin(*ORIGIN, PIXEL, PIXEL)


def write_layer(path, features, field="class", ftype=ogr.OFTInteger, epsg=32633,
                driver="GPKG", layer="labels", extra_layers=()):
    """Write ``features`` = [(shapely geometry, value or None)] with OGR."""
    drv = ogr.GetDriverByName(driver)
    ds = drv.CreateDataSource(str(path))
    srs = None
    if epsg is not None:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    for name in (layer, *extra_layers):
        lyr = ds.CreateLayer(name, srs, ogr.wkbPolygon)
        lyr.CreateField(ogr.FieldDefn(field, ftype))
        lyr.CreateField(ogr.FieldDefn("note", ogr.OFTString))
        for geom, value in (features if name == layer else []):
            feat = ogr.Feature(lyr.GetLayerDefn())
            if value is None:
                feat.SetFieldNull(field)
            else:
                feat.SetField(field, value)
            feat.SetField("note", "x")
            feat.SetGeometry(ogr.CreateGeometryFromWkb(geom.wkb))
            lyr.CreateFeature(feat)
            feat = None
        lyr = None
    ds = None
    return path


def px_box(c0, r0, c1, r1):
    """Map-coordinate box covering pixel columns c0..c1-1 and rows r0..r1-1 of GRID."""
    x0, y0 = GRID * (c0, r0)
    x1, y1 = GRID * (c1, r1)
    return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


# ------------------------------------------------------------------------- read_polygon_labels


def test_integer_field_values_are_class_values(tmp_path):
    path = write_layer(tmp_path / "l.gpkg", [(px_box(0, 0, 5, 5), 3), (px_box(5, 5, 9, 9), 1),
                                             (px_box(1, 6, 3, 9), 3)])
    labels = read_polygon_labels(path, "class")
    assert [c["value"] for c in labels.classes] == [1, 3]
    assert labels.value_of == {1: 1, 3: 3}
    assert labels.kind == "integer" and labels.features == 3 and labels.skipped_null == 0
    assert all(len(c["color"]) == 3 for c in labels.classes)


def test_string_field_names_get_stable_sorted_values(tmp_path):
    feats = [(px_box(0, 0, 2, 2), "water"), (px_box(2, 2, 4, 4), "building"),
             (px_box(4, 4, 6, 6), "tree"), (px_box(6, 6, 8, 8), "water")]
    a = read_polygon_labels(write_layer(tmp_path / "a.gpkg", feats, ftype=ogr.OFTString), "class")
    b = read_polygon_labels(write_layer(tmp_path / "b.gpkg", feats[::-1], ftype=ogr.OFTString),
                            "class")
    assert a.value_of == {"building": 1, "tree": 2, "water": 3}
    assert [(c["value"], c["name"]) for c in a.classes] == [(1, "building"), (2, "tree"),
                                                            (3, "water")]
    assert a.value_of == b.value_of and a.classes == b.classes
    assert a.kind == "string"


def test_missing_field_lists_available_fields(tmp_path):
    path = write_layer(tmp_path / "l.gpkg", [(px_box(0, 0, 2, 2), 1)])
    with pytest.raises(InputError, match=r"no field 'label'.*class, note"):
        read_polygon_labels(path, "label")


def test_missing_file_unreadable_file_and_missing_layer(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_polygon_labels(tmp_path / "nope.gpkg", "class")
    junk = tmp_path / "junk.gpkg"
    junk.write_text("not a geopackage")
    with pytest.raises(InputError, match="not a vector file"):
        read_polygon_labels(junk, "class")
    path = write_layer(tmp_path / "l.gpkg", [(px_box(0, 0, 2, 2), 1)], extra_layers=("other",))
    with pytest.raises(InputError, match="2 layers"):
        read_polygon_labels(path, "class")
    with pytest.raises(InputError, match="no layer 'roads'"):
        read_polygon_labels(path, "class", layer="roads")
    with pytest.raises(InputError, match="no features"):
        read_polygon_labels(path, "class", layer="other")
    assert read_polygon_labels(path, "class", layer="labels").value_of == {1: 1}


def test_null_values_are_skipped_and_counted(tmp_path):
    path = write_layer(tmp_path / "l.gpkg", [(px_box(0, 0, 2, 2), 2), (px_box(2, 2, 4, 4), None),
                                             (px_box(4, 4, 6, 6), None)])
    labels = read_polygon_labels(path, "class")
    assert labels.value_of == {2: 2}
    assert labels.skipped_null == 2 and labels.features == 1
    assert labels.warnings and "2 of 3" in labels.warnings[0]
    # NULL features are not burnt either
    arr = rasterize_polygons(path, "class", labels, UTM, GRID, 10, 10, fill=255)
    assert (arr == 2).sum() == 4 and (arr == 255).sum() == 96
    only_null = write_layer(tmp_path / "n.gpkg", [(px_box(0, 0, 2, 2), None)])
    with pytest.raises(InputError, match="empty"):
        read_polygon_labels(only_null, "class")


def test_out_of_range_integer_values_are_refused(tmp_path):
    path = write_layer(tmp_path / "l.gpkg", [(px_box(0, 0, 2, 2), 255)])
    with pytest.raises(InputError, match="outside 0..254"):
        read_polygon_labels(path, "class")


# --------------------------------------------------------------------------- rasterize_polygons


def test_square_lands_on_exactly_the_expected_pixels(tmp_path):
    path = write_layer(tmp_path / "l.gpkg", [(px_box(10, 20, 30, 40), 4)])
    labels = read_polygon_labels(path, "class")
    arr = rasterize_polygons(path, "class", labels, UTM, GRID, 64, 48, fill=255)
    expected = np.full((48, 64), 255, np.uint8)
    expected[20:40, 10:30] = 4
    assert arr.dtype == np.uint8 and arr.shape == (48, 64)
    np.testing.assert_array_equal(arr, expected)


def test_overlapping_polygons_later_feature_wins(tmp_path):
    path = write_layer(tmp_path / "l.gpkg", [(px_box(0, 0, 6, 6), 1), (px_box(3, 3, 9, 9), 2)])
    arr = rasterize_polygons(path, "class", read_polygon_labels(path, "class"), UTM, GRID, 10, 10)
    assert arr[4, 4] == 2 and arr[1, 1] == 1 and arr[8, 8] == 2 and arr[0, 9] == 0


@pytest.mark.parametrize("epsg", [4326, 3857])
def test_polygon_in_another_crs_is_reprojected(tmp_path, epsg):
    shapes_utm = [(px_box(10, 20, 50, 60), 1), (px_box(40, 5, 70, 30), 2)]
    native = write_layer(tmp_path / "utm.gpkg", shapes_utm)
    foreign = write_layer(tmp_path / f"e{epsg}.gpkg", [
        (shape(transform_geom(UTM, f"EPSG:{epsg}", mapping(g))), v) for g, v in shapes_utm],
        epsg=epsg)
    labels = read_polygon_labels(native, "class")
    a = rasterize_polygons(native, "class", labels, UTM, GRID, 80, 80)
    b = rasterize_polygons(foreign, "class", labels, CRS.from_string(UTM), GRID, 80, 80)
    labelled = (a > 0) | (b > 0)
    assert labelled.sum() > 2000
    assert (a[labelled] == b[labelled]).mean() >= 0.98


def test_window_equals_slice_of_full_rasterisation(tmp_path):
    rng = np.random.default_rng(3)
    feats = []
    for _ in range(25):
        c0, r0 = rng.integers(0, 90, 2)
        w, h = rng.integers(2, 30, 2)
        g = px_box(c0 + 0.3, r0 + 0.6, c0 + w, r0 + h).buffer(rng.uniform(0, 15))
        feats.append((g, int(rng.integers(1, 6))))
    path = write_layer(tmp_path / "l.gpkg", feats)
    labels = read_polygon_labels(path, "class")
    full = rasterize_polygons(path, "class", labels, UTM, GRID, 120, 110, fill=255)
    for win in (Window(0, 0, 40, 40), Window(37, 51, 33, 29), Window(100, 90, 20, 20)):
        part = rasterize_polygons(path, "class", labels, UTM, window_transform(win, GRID),
                                  win.width, win.height, fill=255)
        np.testing.assert_array_equal(
            part, full[win.row_off:win.row_off + win.height,
                       win.col_off:win.col_off + win.width])
    # a window far from every polygon is all fill
    far = rasterize_polygons(path, "class", labels, UTM, window_transform(Window(500, 500, 8, 8),
                                                                          GRID), 8, 8, fill=255)
    assert (far == 255).all()


def test_all_touched_burns_more(tmp_path):
    path = write_layer(tmp_path / "l.gpkg", [(px_box(2.6, 2.6, 5.4, 5.4), 1)])
    labels = read_polygon_labels(path, "class")
    centre = rasterize_polygons(path, "class", labels, UTM, GRID, 10, 10)
    touched = rasterize_polygons(path, "class", labels, UTM, GRID, 10, 10, all_touched=True)
    assert (centre == 1).sum() == 4 and (touched == 1).sum() == 16


def test_geojson_string_labels(tmp_path):
    g = shape(transform_geom(UTM, "EPSG:4326", mapping(px_box(1, 1, 4, 4))))
    path = write_layer(tmp_path / "l.geojson", [(g, "crop")], ftype=ogr.OFTString, epsg=4326,
                       driver="GeoJSON")
    labels = read_polygon_labels(path, "class")
    assert labels.value_of == {"crop": 1}
    arr = rasterize_polygons(path, "class", labels, UTM, GRID, 6, 6)
    assert (arr[1:4, 1:4] == 1).all() and arr.sum() == 9


# -------------------------------------------------------------------------------- vector_bounds


def test_vector_bounds_native_and_transformed(tmp_path):
    path = write_layer(tmp_path / "l.gpkg", [(px_box(10, 20, 30, 40), 1), (px_box(0, 0, 2, 2), 2)])
    left, bottom, right, top = vector_bounds(path)
    assert (left, bottom, right, top) == pytest.approx((ORIGIN[0], ORIGIN[1] - 400,
                                                        ORIGIN[0] + 300, ORIGIN[1]))
    lon0, lat0, lon1, lat1 = vector_bounds(path, crs="EPSG:4326")
    assert 14.9 < lon0 < lon1 < 15.1 and 45.0 < lat0 < lat1 < 45.2
    assert isinstance(read_polygon_labels(path, "class"), PolygonLabels)
