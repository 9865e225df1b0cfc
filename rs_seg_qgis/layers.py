"""Styling of RS Seg results: class rasters, change rasters and class polygons.

Class names and colours travel inside each class raster (band 1 metadata ``RS_SEG_CLASSES``,
JSON ``[{value, name, color}]``, written by the engine from the model card), so a result styles
itself the same way whoever made it.  Processing outputs are styled when QGIS loads them, by a
layer post-processor; the GUI calls the same ``style_*`` functions directly.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional

from qgis.core import (QgsCategorizedSymbolRenderer, QgsColorRampShader, QgsFillSymbol,
                       QgsMapLayer, QgsMapLayerLegend, QgsRasterShader,
                       QgsRasterSymbolLegendNode, QgsSingleBandPseudoColorRenderer,
                       QgsPalettedRasterRenderer, QgsProcessingContext, QgsProcessingFeedback,
                       QgsProcessingLayerPostProcessorInterface, QgsProject, QgsRasterLayer,
                       QgsRendererCategory, QgsSingleSymbolRenderer, QgsVectorLayer)
from qgis.PyQt.QtGui import QColor

from . import colours

ClassList = List[Dict[str, Any]]
OUTPUT_PROPERTY = "rs_seg/output"  # set on every result layer: never a default input

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
    """Paletted renderer with the classes' names and colours (read from the file by default);
    colours too light for a white canvas are tinted (:func:`colours.readable`)."""
    classes = raster_classes(layer.source()) if classes is None else classes
    if not classes:
        return
    entries = [QgsPalettedRasterRenderer.Class(int(c["value"]),
                                               _colour(colours.readable(c["color"])), c["name"])
               for c in classes]
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, entries))
    _refresh(layer)


def project_class_colours(project: Optional[QgsProject] = None) -> List[List[int]]:
    """The class colours of the project's RS Seg class rasters (what a change colour avoids)."""
    found: List[List[int]] = []
    for lyr in (project or QgsProject.instance()).mapLayers().values():
        renderer = lyr.renderer() if isinstance(lyr, QgsRasterLayer) else None
        if isinstance(renderer, QgsPalettedRasterRenderer) and \
                lyr.customProperty(OUTPUT_PROPERTY, False):
            found += [[c.color.red(), c.color.green(), c.color.blue(), c.color.alpha()]
                      for c in renderer.classes()]
    return found


def change_rgb(avoid: Optional[List[List[int]]] = None) -> List[int]:
    """The change colour: unlike every class colour in the project (magenta by default)."""
    return list(colours.change_colour(project_class_colours() if avoid is None else avoid))


def style_change_raster(layer: QgsRasterLayer, avoid: Optional[List[List[int]]] = None) -> None:
    """Change mask: 0 (no change) transparent, 1 (change) in the change colour; names from the
    file if tagged."""
    names = {c["value"]: c["name"] for c in raster_classes(layer.source())}
    rgb = change_rgb(avoid)
    classes = [{**c, "name": names.get(c["value"], c["name"]),
                "color": c["color"] if c["value"] == 0 else [*rgb, 255]} for c in CHANGE_CLASSES]
    style_class_raster(layer, classes)


def style_probability_raster(layer: QgsRasterLayer, rgb: Optional[List[int]] = None) -> None:
    """Probability (uint8, 254 = 1.0): transparent at 0, more opaque and saturated towards 1,
    so the basemap shows through where the model is unsure of a change."""
    rgb = rgb or change_rgb()
    shader = QgsColorRampShader(0, 254)
    shader.setColorRampType(QgsColorRampShader.Interpolated)
    shader.setColorRampItemList([
        QgsColorRampShader.ColorRampItem(0, QColor(255, 255, 255, 0), "0 %"),
        QgsColorRampShader.ColorRampItem(127, QColor(*rgb[:3], 110), "50 %"),
        QgsColorRampShader.ColorRampItem(254, QColor(*rgb[:3], 235), "100 %")])
    raster_shader = QgsRasterShader()
    raster_shader.setRasterShaderFunction(shader)
    layer.setRenderer(QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, raster_shader))
    _refresh(layer)


def _code_areas(path: str, codes: List[int]) -> Dict[int, float]:
    """Pixel count of each from-to code (GDAL's histogram: overviews when present)."""
    from osgeo import gdal
    ds = gdal.Open(path)
    if ds is None or not codes:
        return {}
    top = max(codes) + 1
    counts = ds.GetRasterBand(1).GetHistogram(-0.5, top - 0.5, top, False, True)
    return {c: float(counts[c]) for c in codes if c < len(counts)}


def style_from_to_raster(layer: QgsRasterLayer) -> None:
    """From-to codes (tag ``RS_SEG_FROM_TO``): the main transitions by area in their own
    colours, labelled "from → to (share)"; the rest grey as "other"; 0 transparent."""
    from osgeo import gdal
    ds = gdal.Open(layer.source())
    tag = ds.GetRasterBand(1).GetMetadataItem("RS_SEG_FROM_TO") if ds is not None else None
    if not tag:
        return
    codes = {int(code): name for code, name in json.loads(tag).items()}
    palette = [_distinct_colour(i) for i in range(colours.MAIN_TRANSITIONS)]
    rows = colours.from_to_legend(codes, _code_areas(layer.source(), list(codes)), palette)
    style_class_raster(layer, [{"value": code, "name": label, "color": colour}
                               for code, label, colour in rows])
    layer.setLegend(UniqueLegend())


class UniqueLegend(QgsMapLayerLegend):
    """A raster legend with one row per distinct (label, colour): the from-to "other" codes
    share one row."""

    def createLayerTreeModelLegendNodes(self, node_layer: Any) -> List[Any]:  # noqa: N802
        renderer = node_layer.layer().renderer()
        seen, nodes = set(), []
        for label, colour in renderer.legendSymbologyItems():
            key = (label, colour.rgba())
            if key in seen or colour.alpha() == 0:
                continue
            seen.add(key)
            nodes.append(QgsRasterSymbolLegendNode(node_layer, colour, label))
        return nodes


def _distinct_colour(index: int) -> List[int]:
    """Well-separated colours: golden-ratio hue steps."""
    colour = QColor.fromHsvF((index * 0.618033988749895) % 1.0, 0.75, 0.95)
    return [colour.red(), colour.green(), colour.blue(), 255]


def style_class_polygons(layer: QgsVectorLayer, classes: ClassList,
                         field: str = "class_name") -> None:
    """Categorised renderer on ``field`` (class names) with the classes' colours; light
    classes get a dark outline so they stay visible on white."""
    if not classes or layer.fields().indexOf(field) < 0:
        return
    categories = []
    for c in classes:
        light = colours.is_light(c["color"])
        symbol = QgsFillSymbol.createSimple({
            "color": ",".join(str(int(v)) for v in colours.readable(c["color"])[:3]) + ",160",
            "outline_color": "35,35,35", "outline_width": "0.5" if light else "0.2"})
        categories.append(QgsRendererCategory(c["name"], symbol, c["name"]))
    layer.setRenderer(QgsCategorizedSymbolRenderer(field, categories))
    _refresh(layer)


def style_change_polygons(layer: QgsVectorLayer, avoid: Optional[List[List[int]]] = None) -> None:
    """Change polygons: a light fill and a strong outline in the change colour (readable on
    red roofs and on white)."""
    rgb = ",".join(str(v) for v in change_rgb(avoid))
    layer.setRenderer(QgsSingleSymbolRenderer(QgsFillSymbol.createSimple(
        {"color": f"{rgb},70", "outline_color": f"{rgb},255", "outline_width": "0.6"})))
    _refresh(layer)


def place_on_top(layer: QgsMapLayer, project: Optional[QgsProject]) -> None:
    """Move ``layer``'s node to the top of the layer tree, where a new result is seen (QGIS
    would insert it into whatever group is selected, often under opaque rasters)."""
    root = (project or QgsProject.instance()).layerTreeRoot()
    node = root.findLayer(layer.id())
    if node is None or (node.parent() is root and root.children().index(node) == 0):
        return
    clone = node.clone()
    root.insertChildNode(0, clone)
    node.parent().removeChildNode(node)


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
        layer.setCustomProperty(OUTPUT_PROPERTY, True)  # never offered as an input by default
        self._style(layer)
        place_on_top(layer, context.project())


def style_on_load(context: QgsProcessingContext, output: str,
                  style: Callable[[Any], None]) -> None:
    """Style ``output`` with ``style`` if the run loads it into a project on completion."""
    if not output or not context.willLoadLayerOnCompletion(output):
        return
    processor = StylePostProcessor(style)
    _POST_PROCESSORS[output] = processor
    context.layerToLoadOnCompletionDetails(output).setPostProcessor(processor)
