"""Styling of RS Seg results: class rasters, change rasters and class polygons.

Class names and colours travel inside each class raster (band 1 metadata ``RS_SEG_CLASSES``,
JSON ``[{value, name, color}]``, written by the engine from the model card), so a result styles
itself the same way whoever made it.  Processing outputs are styled when QGIS loads them, by a
layer post-processor; the GUI calls the same ``style_*`` functions directly.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional

from qgis.core import (QgsCategorizedSymbolRenderer, QgsFillSymbol, QgsMapLayer,
                       QgsPalettedRasterRenderer, QgsProcessingContext, QgsProcessingFeedback,
                       QgsProcessingLayerPostProcessorInterface, QgsRasterLayer,
                       QgsRendererCategory, QgsSingleSymbolRenderer, QgsVectorLayer)
from qgis.PyQt.QtGui import QColor

ClassList = List[Dict[str, Any]]

CHANGE_CLASSES: ClassList = [{"value": 0, "name": "no change", "color": [0, 0, 0, 0]},
                             {"value": 1, "name": "change", "color": [255, 0, 0, 255]}]

# Post-processors must outlive the algorithm run (QGIS calls them after the run, on the main
# thread) but PyQGIS does not keep the Python objects alive: hold them here, one per output.
_POST_PROCESSORS: Dict[str, "StylePostProcessor"] = {}


def raster_classes(path: str) -> ClassList:
    """Classes ``{value, name, color}`` of a class raster, from its band 1 metadata.

    ``RS_SEG_CLASSES`` wins; else ``CLASS_<v>`` names with the GDAL colour table; else [].
    """
    from osgeo import gdal
    ds = gdal.Open(path)
    if ds is None:
        return []
    band = ds.GetRasterBand(1)
    meta = band.GetMetadata() or {}
    if "RS_SEG_CLASSES" in meta:
        try:
            return [{"value": int(c["value"]), "name": str(c["name"]), "color": list(c["color"])}
                    for c in json.loads(meta["RS_SEG_CLASSES"])]
        except (ValueError, KeyError, TypeError):
            pass  # a hand-edited tag: fall back to the per-class names
    table = band.GetColorTable()
    classes = []
    for key, name in sorted(meta.items()):
        if key.startswith("CLASS_") and key[6:].isdigit():
            value = int(key[6:])
            colour = list(table.GetColorEntry(value)) if table and value < table.GetCount() \
                else [128, 128, 128]
            classes.append({"value": value, "name": name, "color": colour})
    return sorted(classes, key=lambda c: c["value"])


def _colour(rgb: List[int]) -> QColor:
    return QColor(*[int(v) for v in rgb[:4]])


def style_class_raster(layer: QgsRasterLayer, classes: Optional[ClassList] = None) -> None:
    """Paletted renderer with the classes' names and colours (read from the file by default)."""
    classes = raster_classes(layer.source()) if classes is None else classes
    if not classes:
        return
    entries = [QgsPalettedRasterRenderer.Class(int(c["value"]), _colour(c["color"]), c["name"])
               for c in classes]
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, entries))
    _refresh(layer)


def style_change_raster(layer: QgsRasterLayer) -> None:
    """Change mask: 0 (no change) transparent, 1 (change) red; names from the file if tagged."""
    names = {c["value"]: c["name"] for c in raster_classes(layer.source())}
    classes = [{**c, "name": names.get(c["value"], c["name"])} for c in CHANGE_CLASSES]
    style_class_raster(layer, classes)


def style_from_to_raster(layer: QgsRasterLayer) -> None:
    """From-to codes (tag ``RS_SEG_FROM_TO``: code → "from -> to"): 0 transparent, others
    distinct colours."""
    from osgeo import gdal
    ds = gdal.Open(layer.source())
    tag = ds.GetRasterBand(1).GetMetadataItem("RS_SEG_FROM_TO") if ds is not None else None
    if not tag:
        return
    codes = sorted((int(code), name) for code, name in json.loads(tag).items())
    classes = [{"value": code, "name": name,
                "color": [0, 0, 0, 0] if code == 0 else _distinct_colour(i)}
               for i, (code, name) in enumerate(codes)]
    style_class_raster(layer, classes)


def _distinct_colour(index: int) -> List[int]:
    """Well-separated colours: golden-ratio hue steps."""
    colour = QColor.fromHsvF((index * 0.618033988749895) % 1.0, 0.75, 0.95)
    return [colour.red(), colour.green(), colour.blue(), 255]


def style_class_polygons(layer: QgsVectorLayer, classes: ClassList,
                         field: str = "class_name") -> None:
    """Categorised renderer on ``field`` (class names) with the classes' colours."""
    if not classes or layer.fields().indexOf(field) < 0:
        return
    categories = []
    for c in classes:
        symbol = QgsFillSymbol.createSimple({"color": ",".join(str(int(v)) for v in c["color"][:3])
                                             + ",160", "outline_color": "35,35,35",
                                             "outline_width": "0.2"})
        categories.append(QgsRendererCategory(c["name"], symbol, c["name"]))
    layer.setRenderer(QgsCategorizedSymbolRenderer(field, categories))
    _refresh(layer)


def style_change_polygons(layer: QgsVectorLayer) -> None:
    """Change polygons: semi-transparent red fill, dark red outline."""
    layer.setRenderer(QgsSingleSymbolRenderer(QgsFillSymbol.createSimple(
        {"color": "255,0,0,110", "outline_color": "160,0,0", "outline_width": "0.3"})))
    _refresh(layer)


def _refresh(layer: QgsMapLayer) -> None:
    layer.triggerRepaint()
    layer.emitStyleChanged()  # the layer tree redraws the legend


class StylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Applies one styling function to an output when QGIS loads it."""

    def __init__(self, style: Callable[[Any], None]) -> None:
        super().__init__()
        self._style = style

    def postProcessLayer(self, layer: QgsMapLayer, context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> None:
        self._style(layer)


def style_on_load(context: QgsProcessingContext, output: str,
                  style: Callable[[Any], None]) -> None:
    """Style ``output`` with ``style`` if the run loads it into a project on completion."""
    if not output or not context.willLoadLayerOnCompletion(output):
        return
    processor = StylePostProcessor(style)
    _POST_PROCESSORS[output] = processor
    context.layerToLoadOnCompletionDetails(output).setPostProcessor(processor)
