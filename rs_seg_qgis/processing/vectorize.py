"""``rs_seg:vectorize``: polygons from a class raster."""
from __future__ import annotations

import functools
from typing import Any, Dict, Optional

from qgis.core import (QgsProcessing, QgsProcessingContext, QgsProcessingFeedback,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterLayer,
                       QgsProcessingParameterVectorDestination)

from ..layers import raster_classes, style_class_polygons, style_on_load
from .base import EngineRun, RsSegAlgorithm, help_html, require_engine
from .outline_params import OUTLINE_HELP, add_outline_parameters, outline_options


class VectorizeAlgorithm(RsSegAlgorithm):
    ID = "vectorize"
    DISPLAY = "Vectorize classes"
    GROUP = "Inference"
    GROUP_ID = "inference"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return help_html(
            "Turns a class raster into polygons, one per 4-connected region: buildings "
            "regularised, natural classes smoothed with shared borders, as the model card's "
            "class shapes say (or as overridden here). Every polygon carries class_value, "
            "class_name, shape, area_m2, perimeter_m, prob_mean and prob_min (with the "
            "probabilities), source, model, model_sha256, created and rs_seg_version. Large "
            "rasters are processed block by block and regions crossing blocks come out whole.",
            [("INPUT", "a single-band class raster (e.g. the output of Segment raster)"),
             ("PROBABILITIES", "optional: the class probabilities of the same Segment run "
                               "(mean and minimum class probability per polygon)"),
             ("MODEL", "optional: the model that made the raster (class shapes, names, and its "
                       "name and SHA-256 on every polygon)"),
             *OUTLINE_HELP,
             ("MIN_AREA", "drop polygons smaller than this many m² (default 0: keep all)"),
             ("SIMPLIFY", "simplification tolerance in CRS units for pixel-outline classes "
                          "(default 0: exact pixel outlines)"),
             ("OUTPUT", "the polygons (GeoPackage)")])

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Class raster"))
        self.addParameter(QgsProcessingParameterRasterLayer(
            "PROBABILITIES", "Class probabilities (same run)", optional=True))
        self.add_model(description="Model file that made the raster", optional=True)
        add_outline_parameters(self)
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
        probabilities = self.raster_input(parameters, "PROBABILITIES", context, feedback)
        output = self.output(parameters, "OUTPUT", context)
        result = EngineRun(context, feedback, [output]).call(
            vectorize, source, output, produces=[output], probabilities=probabilities,
            model=self.parameterAsFile(parameters, "MODEL", context) or None,
            min_area=self.parameterAsDouble(parameters, "MIN_AREA", context),
            simplify=self.parameterAsDouble(parameters, "SIMPLIFY", context),
            **outline_options(self, parameters, context))
        feedback.pushInfo(f"{result['features']} polygons")
        style_on_load(context, output, functools.partial(style_class_polygons,
                                                         classes=raster_classes(source)))
        return {"OUTPUT": output}
