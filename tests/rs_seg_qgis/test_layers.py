"""Styling of results: classes from the raster's tags, change and from-to rasters, polygons,
and the post-processor that applies a style when Processing loads an output."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from qgis.core import (QgsFeature, QgsLayerTreeLayer, QgsPalettedRasterRenderer,
                       QgsProcessingContext, QgsProcessingFeedback, QgsProject, QgsRasterLayer,
                       QgsVectorLayer)
from qgis.PyQt.QtCore import Qt

from engine.io.rasters import class_colormap, class_tags
from rs_seg_qgis import layers
from tests.conftest import write_raster

pytestmark = pytest.mark.qgis

CLASSES = [{"value": 1, "name": "road", "color": [200, 200, 200]},
           {"value": 4, "name": "tree", "color": [0, 160, 0]}]


def class_raster(path, tags=None, colormap=None, data=None):
    write_raster(path, data if data is not None else np.array([[[1, 4], [4, 255]]], np.uint8),
                 nodata=255)
    with rasterio.open(path, "r+") as ds:
        if tags:
            ds.update_tags(1, **tags)
        if colormap:
            ds.write_colormap(1, colormap)
    return str(path)


def palette(layer):
    renderer = layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    return [(c.value, c.label, c.color.getRgb()) for c in renderer.classes()]


def test_classes_come_from_the_tags_or_the_colour_table(qgis_app, tmp_path):
    tagged = class_raster(tmp_path / "a.tif", class_tags(CLASSES), class_colormap(CLASSES))
    assert layers.raster_classes(tagged) == CLASSES
    names_only = {k: v for k, v in class_tags(CLASSES).items() if k != "RS_SEG_CLASSES"}
    legacy = class_raster(tmp_path / "b.tif", names_only, class_colormap(CLASSES))
    assert layers.raster_classes(legacy) == [{**c, "color": c["color"] + [255]} for c in CLASSES]
    assert layers.raster_classes(class_raster(tmp_path / "c.tif")) == []


def test_class_raster_gets_a_named_palette(qgis_app, tmp_path):
    layer = QgsRasterLayer(class_raster(tmp_path / "a.tif", class_tags(CLASSES)), "a")
    layers.style_class_raster(layer)
    assert palette(layer) == [(1, "road", (200, 200, 200, 255)), (4, "tree", (0, 160, 0, 255))]


def test_change_and_from_to_rasters(qgis_app, tmp_path):
    change = QgsRasterLayer(class_raster(tmp_path / "change.tif", class_tags(
        [{"value": 0, "name": "stable", "color": [0, 0, 0]},
         {"value": 1, "name": "changed", "color": [9, 9, 9]}])), "change")
    layers.style_change_raster(change)
    assert palette(change) == [(0, "stable", (0, 0, 0, 0)), (1, "changed", (255, 0, 255, 255))]
    codes = {"0": "unchanged", "1": "road -> road", "2": "road -> tree"}
    path = class_raster(tmp_path / "ft.tif", {"RS_SEG_FROM_TO": json.dumps(codes)},
                        data=np.array([[[0, 1], [2, 2]]], np.uint8))
    from_to = QgsRasterLayer(path, "ft")
    layers.style_from_to_raster(from_to)
    entries = {v: (name, colour) for v, name, colour in palette(from_to)}
    assert entries[2][0] == "road → tree (66.7 %)" and entries[1][0] == "road → road (33.3 %)"
    assert entries[0] == ("unchanged", (0, 0, 0, 0)) and entries[1][1] != entries[2][1]
    legend = from_to.legend().createLayerTreeModelLegendNodes(QgsLayerTreeLayer(from_to))
    assert [n.data(Qt.DisplayRole) for n in legend] == ["road → tree (66.7 %)",
                                                         "road → road (33.3 %)"]


def test_light_classes_are_tinted_and_outlined(qgis_app, tmp_path):
    white = [{"value": 1, "name": "impervious", "color": [255, 255, 255]},
             {"value": 2, "name": "building", "color": [0, 0, 255]}]
    layer = QgsRasterLayer(class_raster(tmp_path / "w.tif", class_tags(white)), "w")
    layers.style_class_raster(layer)
    assert palette(layer) == [(1, "impervious", (199, 199, 199, 255)),
                              (2, "building", (0, 0, 255, 255))]
    polygons = polygon_layer(["impervious", "building"])
    layers.style_class_polygons(polygons, white)
    widths = [c.symbol().symbolLayer(0).strokeWidth() for c in polygons.renderer().categories()]
    assert widths[0] > widths[1]


def test_probability_is_a_transparent_ramp(qgis_app, tmp_path):
    path = class_raster(tmp_path / "p.tif", data=np.array([[[0, 127], [254, 255]]], np.uint8))
    layer = QgsRasterLayer(path, "p")
    layers.style_probability_raster(layer, [255, 0, 255])
    items = layer.renderer().shader().rasterShaderFunction().colorRampItemList()
    assert [i.color.alpha() for i in items] == [0, 110, 235]
    assert [i.label for i in items] == ["0 %", "50 %", "100 %"]


def polygon_layer(names):
    layer = QgsVectorLayer("Polygon?crs=EPSG:32633&field=class_name:string", "p", "memory")
    for name in names:
        f = QgsFeature(layer.fields())
        f["class_name"] = name
        layer.dataProvider().addFeature(f)
    return layer


def test_polygons_are_categorised_by_class_name(qgis_app):
    layer = polygon_layer(["road", "tree"])
    layers.style_class_polygons(layer, CLASSES)
    renderer = layer.renderer()
    assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "class_name"
    assert [(c.value(), c.symbol().color().getRgb()[:3]) for c in renderer.categories()] == \
        [("road", (200, 200, 200)), ("tree", (0, 160, 0))]


def test_post_processor_styles_only_outputs_that_are_loaded(qgis_app, tmp_path):
    path = class_raster(tmp_path / "out.tif", class_tags(CLASSES))
    context = QgsProcessingContext()
    layers.style_on_load(context, path, layers.style_class_raster)
    assert path not in layers._POST_PROCESSORS  # not loaded on completion: nothing to style
    context.addLayerToLoadOnCompletion(path, QgsProcessingContext.LayerDetails(
        "out", QgsProject.instance(), "OUTPUT"))
    layers.style_on_load(context, path, layers.style_class_raster)
    processor = context.layerToLoadOnCompletionDetails(path).postProcessor()
    assert processor is layers._POST_PROCESSORS[path]
    layer = QgsRasterLayer(path, "out")
    processor.postProcessLayer(layer, context, QgsProcessingFeedback())
    assert [label for _, label, _ in palette(layer)] == ["road", "tree"]
