"""``rs_seg:vectorize``: polygons from a class raster."""
from __future__ import annotations

import functools
from typing import Any, Dict, Optional

from qgis.core import (QgsProcessing, QgsProcessingContext, QgsProcessingFeedback,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterLayer,
                       QgsProcessingParameterVectorDestination)

from ..layers import raster_classes, style_class_polygons, style_on_load
from .base import EngineRun, RsSegAlgorithm, help_html, require_engine


class VectorizeAlgorithm(RsSegAlgorithm):
    ID = "vectorize"
    DISPLAY = "Vectorize classes"
    GROUP = "Inference"
    GROUP_ID = "inference"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return help_html(
            "Turns a class raster into polygons, one per 4-connected region, with class_value, "
            "class_name (from the raster's class tags) and area_m2. Large rasters are processed "
            "block by block and regions crossing blocks come out whole.",
            [("INPUT", "a single-band class raster (e.g. the output of Segment raster)"),
             ("MIN_AREA", "drop polygons smaller than this many m² (default 0: keep all)"),
             ("SIMPLIFY", "simplification tolerance in CRS units (default 0: exact pixel "
                          "outlines; about one pixel size smooths the staircase)"),
             ("OUTPUT", "the polygons (GeoPackage)")])

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Class raster"))
        self.addParameter(QgsProcessingParameterNumber(
            "MIN_AREA", "Minimum area (m²)", QgsProcessingParameterNumber.Double, 0.0,
            minValue=0.0))
        self.addParameter(QgsProcessingParameterNumber(
            "SIMPLIFY", "Simplification tolerance (CRS units)",
            QgsProcessingParameterNumber.Double, 0.0, minValue=0.0))
        self.addParameter(QgsProcessingParameterVectorDestination(
            "OUTPUT", "Class polygons", QgsProcessing.TypeVectorPolygon))

    def processAlgorithm(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> Dict[str, Any]:  # noqa: N802
        require_engine()
        from engine.analysis.vectorize import vectorize

        source = self.raster_input(parameters, "INPUT", context, feedback)
        output = self.output(parameters, "OUTPUT", context)
        result = EngineRun(context, feedback, [output]).call(
            vectorize, source, output, produces=[output],
            min_area=self.parameterAsDouble(parameters, "MIN_AREA", context),
            simplify=self.parameterAsDouble(parameters, "SIMPLIFY", context))
        feedback.pushInfo(f"{result['features']} polygons")
        style_on_load(context, output, functools.partial(style_class_polygons,
                                                         classes=raster_classes(source)))
        return {"OUTPUT": output}
