"""The analyst's corrections layer in the project (QGIS side of :mod:`engine.io.corrections`).

The file is a GeoPackage beside the project with a ``corrections`` layer (an integer ``class``
field shown through a value map of the model's classes, so the attribute form offers class names)
and a ``reviewed`` layer (places the analyst checked).  Helpers here load and style both, copy a
predicted polygon into the corrections with a new class, and record a reviewed place.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from qgis.core import (QgsCategorizedSymbolRenderer, QgsCoordinateReferenceSystem,
                       QgsCoordinateTransform, QgsEditorWidgetSetup, QgsFeature, QgsFillSymbol,
                       QgsGeometry, QgsProject, QgsRectangle, QgsRendererCategory,
                       QgsSingleSymbolRenderer, QgsVectorLayer)

CORRECTIONS_LAYER = "corrections"  # engine.io.corrections (the engine may be missing)
REVIEWED_LAYER = "reviewed"
CLASS_FIELD = "class"

ClassList = List[Dict[str, Any]]


def corrections_path(image_path: str, project: Optional[QgsProject] = None) -> Path:
    """Where a new corrections file goes: beside the project file, else beside the image."""
    home = (project or QgsProject.instance()).homePath()
    folder = Path(home) if home else Path(image_path).parent
    stem = Path(image_path).stem or "image"
    path = folder / f"{stem}_corrections.gpkg"
    n = 2
    while path.exists():
        path, n = folder / f"{stem}_corrections_{n}.gpkg", n + 1
    return path


def create_layers(image_path: str, crs: QgsCoordinateReferenceSystem, classes: ClassList,
                  project: Optional[QgsProject] = None) -> Tuple[QgsVectorLayer, QgsVectorLayer]:
    """Write a new corrections GeoPackage in ``crs`` and add both layers to the project."""
    from engine.io.corrections import create_corrections
    path = create_corrections(corrections_path(image_path, project), crs.toWkt())
    return load_layers(str(path), classes, project)


def load_layers(path: str, classes: ClassList, project: Optional[QgsProject] = None
                ) -> Tuple[QgsVectorLayer, QgsVectorLayer]:
    """The ``corrections`` and ``reviewed`` layers of ``path``, styled and in the project."""
    project = project or QgsProject.instance()
    corrections = QgsVectorLayer(f"{path}|layername={CORRECTIONS_LAYER}", "Corrections", "ogr")
    reviewed = QgsVectorLayer(f"{path}|layername={REVIEWED_LAYER}", "Reviewed places", "ogr")
    if not corrections.isValid() or not reviewed.isValid():
        raise ValueError(f"{path} is not a corrections GeoPackage (layers {CORRECTIONS_LAYER!r} "
                         f"and {REVIEWED_LAYER!r})")
    set_classes(corrections, classes)
    reviewed.setRenderer(QgsSingleSymbolRenderer(QgsFillSymbol.createSimple(
        {"color": "0,0,0,0", "outline_color": "0,160,255", "outline_width": "0.6"})))
    project.addMapLayers([reviewed, corrections])
    return corrections, reviewed


def set_classes(layer: QgsVectorLayer, classes: ClassList) -> None:
    """The class field's value map (name → value) and a renderer in the classes' colours."""
    index = layer.fields().indexOf(CLASS_FIELD)
    if index < 0:
        raise ValueError(f"{layer.name()} has no {CLASS_FIELD!r} field")
    layer.setEditorWidgetSetup(index, QgsEditorWidgetSetup(
        "ValueMap", {"map": [{c["name"]: int(c["value"])} for c in classes]}))
    categories = [QgsRendererCategory(int(c["value"]), QgsFillSymbol.createSimple(
        {"color": ",".join(str(int(v)) for v in c["color"][:3]) + ",140",
         "outline_color": "255,255,255", "outline_width": "0.4"}), c["name"]) for c in classes]
    layer.setRenderer(QgsCategorizedSymbolRenderer(CLASS_FIELD, categories))
    layer.triggerRepaint()


def add_polygon(layer: QgsVectorLayer, geometry: QgsGeometry,
                crs: QgsCoordinateReferenceSystem, value: Optional[int] = None) -> int:
    """Append ``geometry`` (in ``crs``) to ``layer``, with class ``value`` when given, and save.
    Returns the new feature's id."""
    geom = QgsGeometry(geometry)
    if crs.isValid() and crs != layer.crs():
        geom.transform(QgsCoordinateTransform(crs, layer.crs(), QgsProject.instance()))
    geom.convertToMultiType()
    feature = QgsFeature(layer.fields())
    feature.setGeometry(geom)
    if value is not None:
        feature.setAttribute(CLASS_FIELD, int(value))
    ok, added = layer.dataProvider().addFeatures([feature])
    if not ok:
        raise ValueError(f"cannot add the polygon to {layer.name()}: "
                         f"{layer.dataProvider().lastError()}")
    layer.triggerRepaint()
    return int(added[0].id())


def copy_with_class(source: QgsVectorLayer, corrections: QgsVectorLayer, value: int) -> int:
    """Copy the selected polygons of ``source`` (e.g. the model's class polygons) into the
    corrections with class ``value``; returns how many were copied."""
    count = 0
    for feature in source.selectedFeatures():
        add_polygon(corrections, feature.geometry(), source.crs(), value)
        count += 1
    return count


def mark_reviewed(reviewed: QgsVectorLayer, bounds: QgsRectangle,
                  crs: QgsCoordinateReferenceSystem) -> int:
    """Record the place ``bounds`` (in ``crs``) as reviewed."""
    return add_polygon(reviewed, QgsGeometry.fromRect(bounds), crs)


def _geometries_in(layer: Optional[QgsVectorLayer],
                   crs: QgsCoordinateReferenceSystem) -> Iterator[QgsGeometry]:
    """The non-empty geometries of ``layer`` (its edits included) in ``crs``."""
    if layer is None:
        return
    transform = (QgsCoordinateTransform(layer.crs(), crs, QgsProject.instance())
                 if crs.isValid() and crs != layer.crs() else None)
    for feature in layer.getFeatures():
        geometry = QgsGeometry(feature.geometry())
        if geometry.isEmpty():
            continue
        if transform is not None:
            geometry.transform(transform)
        yield geometry


def polygons_in(layer: Optional[QgsVectorLayer], crs: QgsCoordinateReferenceSystem
                ) -> List[Dict[str, Any]]:
    """The polygons of ``layer`` as GeoJSON geometries in ``crs``."""
    return [json.loads(geometry.asJson()) for geometry in _geometries_in(layer, crs)]


def reviewed_bounds(reviewed: Optional[QgsVectorLayer], crs: QgsCoordinateReferenceSystem
                    ) -> List[Tuple[float, float, float, float]]:
    """Bounds of the reviewed places in ``crs`` (left, bottom, right, top)."""
    boxes = (geometry.boundingBox() for geometry in _geometries_in(reviewed, crs))
    return [(b.xMinimum(), b.yMinimum(), b.xMaximum(), b.yMaximum()) for b in boxes]
