"""The engine's output-path guard on a Processing algorithm's parameters, before any work.

Every destination (raster, vector, file, folder) is checked against every layer and file the
algorithm reads and against the other destinations, resolved through symlinks
(:func:`engine.jobs.check_outputs`); a raster destination must also be a GeoTIFF name.  QGIS's
own temporary outputs are skipped: they live in its temporary folder, which no input names.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from qgis.core import (QgsProcessingAlgorithm, QgsProcessingContext, QgsProcessingParameterDefinition,
                       QgsProcessingUtils)

LAYER_TYPES = ("raster", "source", "vector", "layer", "mesh", "pointcloud")
NOT_FILES = ("memory:", "ogr:", "postgis:", "postgres:", "spatialite:")


def _file(source: str) -> Optional[str]:
    """The file part of a layer source or destination ('/a.gpkg|layername=x' → '/a.gpkg')."""
    path = source.split("|")[0].strip()
    return path if path and not path.lower().startswith(NOT_FILES) else None


def _destination(alg: QgsProcessingAlgorithm, param: QgsProcessingParameterDefinition,
                 parameters: Dict[str, Any], context: QgsProcessingContext) -> Optional[str]:
    name = param.name()
    if param.type() in ("fileDestination", "folderDestination"):
        path = alg.parameterAsFileOutput(parameters, name, context)
    else:
        path = alg.parameterAsOutputLayer(parameters, name, context)
    path = _file(path or "")
    temporary = QgsProcessingUtils.tempFolder()
    return None if path is None or path.startswith(temporary) else path


def _sources(alg: QgsProcessingAlgorithm, param: QgsProcessingParameterDefinition,
             parameters: Dict[str, Any], context: QgsProcessingContext) -> List[str]:
    name, kind = param.name(), param.type()
    if parameters.get(name) in (None, ""):
        return []
    if kind == "file":
        return [alg.parameterAsFile(parameters, name, context)]
    if kind == "multilayer":
        layers = alg.parameterAsLayerList(parameters, name, context)
    elif kind in LAYER_TYPES:
        layers = [alg.parameterAsLayer(parameters, name, context)]
    else:
        return []
    return [path for layer in layers if layer is not None
            for path in [_file(layer.source())] if path]


def paths(alg: QgsProcessingAlgorithm, parameters: Dict[str, Any],
          context: QgsProcessingContext) -> Tuple[Dict[str, Optional[str]], List[str], List[str]]:
    """(destinations by parameter name, input files, names of folder destinations)."""
    outputs: Dict[str, Optional[str]] = {}
    inputs: List[str] = []
    folders: List[str] = []
    for param in alg.parameterDefinitions():
        if param.isDestination():
            outputs[param.name()] = _destination(alg, param, parameters, context)
            if param.type() == "folderDestination":
                folders.append(param.name())
        else:
            inputs.extend(_sources(alg, param, parameters, context))
    return outputs, inputs, folders


def check(alg: QgsProcessingAlgorithm, parameters: Dict[str, Any],
          context: QgsProcessingContext) -> None:
    """Raise the engine's sentence (an ``EngineError``) when an output path is unsafe."""
    from engine.io.cog import check_raster_outputs
    outputs, inputs, folders = paths(alg, parameters, context)
    rasters = {p.name() for p in alg.parameterDefinitions() if p.type() == "rasterDestination"}
    check_raster_outputs({k: v for k, v in outputs.items() if k in rasters}, inputs,
                         {k: v for k, v in outputs.items() if k not in rasters}, folders)
