"""Results of a run into the project: one layer-tree group named after the run, styled layers.

Styling is layers.py's (the same functions the Processing post-processors use), so a result
looks the same whether it came from the dock, the toolbox or a saved project.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from qgis.core import (QgsLayerTreeGroup, QgsMapLayer, QgsProject, QgsRasterLayer,
                       QgsVectorLayer)

from .. import layers
from .defaults import mark_output

Styler = Optional[Callable[[Any], None]]
# (result key, layer name, kind, styler factory(results) -> styler, visible)
Spec = Tuple[str, str, str, Callable[[Dict[str, Any]], Styler], bool]


def _class_polygons(results: Dict[str, Any]) -> Styler:
    return functools.partial(layers.style_class_polygons,
                             classes=layers.raster_classes(str(results["OUTPUT"])))


SEGMENT_LAYERS: Sequence[Spec] = (
    ("OUTPUT_VECTOR", "Class polygons", "vector", _class_polygons, False),
    ("OUTPUT", "Classes", "raster", lambda r: layers.style_class_raster, True),
    ("OUTPUT_PROBABILITY", "Class probabilities", "raster", lambda r: None, False),
)
CHANGE_LAYERS: Sequence[Spec] = (
    ("OUTPUT_VECTOR", "Change polygons", "vector", lambda r: layers.style_change_polygons, True),
    ("OUTPUT", "Change", "raster", lambda r: layers.style_change_raster, True),
    ("OUTPUT_FROM_TO", "From-to classes", "raster", lambda r: layers.style_from_to_raster, False),
    ("OUTPUT_PROBABILITY", "Change probability", "raster",
     lambda r: layers.style_probability_raster, False),
)


def add_group(name: str, project: Optional[QgsProject] = None) -> QgsLayerTreeGroup:
    """A new group at the top of the layer tree."""
    root = (project or QgsProject.instance()).layerTreeRoot()
    return root.insertGroup(0, name)


def add_layer(group: QgsLayerTreeGroup, path: str, name: str, kind: str, style: Styler = None,
              visible: bool = True, project: Optional[QgsProject] = None) -> QgsMapLayer:
    """Load ``path`` as a raster or vector layer into ``group``, styled by ``style``."""
    layer: QgsMapLayer = (QgsRasterLayer(path, name) if kind == "raster"
                          else QgsVectorLayer(path, name, "ogr"))
    if not layer.isValid():
        raise ValueError(f"cannot open the result {path} as a {kind} layer")
    if style is not None:
        style(layer)
    mark_output(layer)
    (project or QgsProject.instance()).addMapLayer(layer, False)
    node = group.addLayer(layer)
    node.setItemVisibilityChecked(visible)
    return layer


def add_results(name: str, results: Dict[str, Any], specs: Sequence[Spec],
                project: Optional[QgsProject] = None) -> QgsLayerTreeGroup:
    """A group ``name`` holding each output of ``results`` listed in ``specs`` that exists."""
    group = add_group(name, project)
    for key, title, kind, styler, visible in specs:
        path = results.get(key)
        if path and Path(str(path)).exists():
            add_layer(group, str(path), title, kind, styler(results), visible, project)
    return group


def add_segment_results(name: str, results: Dict[str, Any],
                        project: Optional[QgsProject] = None) -> QgsLayerTreeGroup:
    """Classes (paletted with the model's names/colours), optional polygons, probabilities."""
    return add_results(name, results, SEGMENT_LAYERS, project)


def add_change_results(name: str, results: Dict[str, Any],
                       project: Optional[QgsProject] = None) -> QgsLayerTreeGroup:
    """Change (red over transparent), change polygons, optional from-to and probability."""
    return add_results(name, results, CHANGE_LAYERS, project)


def group_layers(group: QgsLayerTreeGroup) -> List[QgsMapLayer]:
    """The layers of ``group`` in tree order."""
    return [node.layer() for node in group.findLayers()]
