"""Which project layers the dock offers first: imagery that is not an RS Seg result, two
different dates, polygons with a class field.

RS Seg results are recognised by the layer property :data:`OUTPUT_PROPERTY` (set when a result
is added, by the dock or by a Processing post-processor) and, for files opened later, by the
class tags the engine writes into every class, change and probability raster.
"""
from __future__ import annotations

import re
from typing import List, Optional, Tuple

from qgis.core import QgsMapLayer, QgsProject, QgsRasterLayer, QgsVectorLayer, QgsWkbTypes

from ..layers import OUTPUT_PROPERTY
_ENGINE_TAGS = ("RS_SEG_CLASSES", "RS_SEG_FROM_TO", "CLASS_0", "CLASS_1")
_DATE = re.compile(r"(?<!\d)((?:19|20)\d{2})[-_.]?(\d{2})?[-_.]?(\d{2})?(?!\d)")
_BEFORE = re.compile(r"(?<![a-z0-9])(before|t1|date ?1|earlier)(?![a-z0-9])", re.I)
_AFTER = re.compile(r"(?<![a-z0-9])(after|t2|date ?2|later)(?![a-z0-9])", re.I)
CLASS_FIELDS = ("class", "class_value", "class_name", "classvalue", "label", "code", "landcover",
                "land_cover", "lc", "type", "category")


def mark_output(layer: QgsMapLayer) -> None:
    """Remember that ``layer`` is an RS Seg result (never offered as an input by default)."""
    layer.setCustomProperty(OUTPUT_PROPERTY, True)


def is_output(layer: QgsMapLayer) -> bool:
    """Whether ``layer`` is an RS Seg result (property, or the engine's raster tags)."""
    if layer.customProperty(OUTPUT_PROPERTY, False) in (True, "true", 1, "1"):
        return True
    if not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
        return False
    from osgeo import gdal
    ds = gdal.OpenEx(layer.source().split("|")[0], gdal.OF_RASTER)
    if ds is None:
        return False
    meta = ds.GetRasterBand(1).GetMetadata() or {}
    return any(tag in meta for tag in _ENGINE_TAGS)


def _tree_order(project: QgsProject) -> List[QgsMapLayer]:
    """Layers from the top of the layer tree down (new layers arrive on top), then the rest."""
    tree = [node.layer() for node in project.layerTreeRoot().findLayers() if node.layer()]
    rest = [lyr for lyr in project.mapLayers().values() if lyr not in tree]
    return tree + rest


def imagery_layers(project: Optional[QgsProject] = None) -> List[QgsRasterLayer]:
    """Valid raster layers that are not RS Seg results, most recently added first."""
    project = project or QgsProject.instance()
    return [lyr for lyr in _tree_order(project)
            if isinstance(lyr, QgsRasterLayer) and lyr.isValid() and not is_output(lyr)]


def default_imagery(project: Optional[QgsProject] = None) -> Optional[QgsRasterLayer]:
    """The most recently added imagery layer, or None."""
    layers = imagery_layers(project)
    return layers[0] if layers else None


def _date_key(name: str) -> Optional[Tuple[int, int, int]]:
    match = _DATE.search(name)
    if match is None:
        return None
    return tuple(int(g) if g else 0 for g in match.groups())  # type: ignore[return-value]


def date_pair(project: Optional[QgsProject] = None
              ) -> Tuple[Optional[QgsRasterLayer], Optional[QgsRasterLayer]]:
    """(before, after): two different imagery layers, by the words or dates in their names,
    else the two most recently added (the newer one as 'after')."""
    layers = imagery_layers(project)
    if len(layers) < 2:
        return (layers[0] if layers else None), None
    before = next((lyr for lyr in layers if _BEFORE.search(lyr.name())), None)
    after = next((lyr for lyr in layers if _AFTER.search(lyr.name()) and lyr is not before), None)
    if before is not None or after is not None:  # named dates; the other: the newest left
        before = before or next(lyr for lyr in layers if lyr is not after)
        after = after or next(lyr for lyr in layers if lyr is not before)
        return before, after
    dated = [lyr for lyr in layers if _date_key(lyr.name())]
    if len(dated) >= 2:
        ordered = sorted(dated, key=lambda lyr: _date_key(lyr.name()))
        return ordered[-2], ordered[-1]
    return layers[1], layers[0]


def class_field(layer: QgsVectorLayer) -> Optional[str]:
    """The field that most likely holds the classes (class, label, code …), or None."""
    names = [f.name() for f in layer.fields()]
    lowered = [n.lower() for n in names]
    for wanted in CLASS_FIELDS:
        if wanted in lowered:
            return names[lowered.index(wanted)]
    return next((n for n in names if "class" in n.lower()), None)


def training_polygons(project: Optional[QgsProject] = None) -> Optional[QgsVectorLayer]:
    """The most recently added polygon layer with a class-like field that is not a result."""
    project = project or QgsProject.instance()
    for layer in _tree_order(project):
        if isinstance(layer, QgsVectorLayer) and layer.isValid() and \
                layer.geometryType() == QgsWkbTypes.PolygonGeometry and \
                not is_output(layer) and class_field(layer):
            return layer
    return None


def apply(combo: "object", layer: Optional[QgsMapLayer], force: bool = False) -> None:
    """Set a layer combo to ``layer`` when it is empty or shows a result (or ``force``); a
    combo that may be empty is emptied rather than left on a result."""
    current = combo.currentLayer()
    if layer is not None and (force or current is None or is_output(current)):
        combo.setLayer(layer)
    elif layer is None and current is not None and is_output(current) and \
            combo.allowEmptyLayer():
        combo.setLayer(None)
