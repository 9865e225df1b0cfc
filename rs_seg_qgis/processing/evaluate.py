"""``rs_seg:evaluate``: accuracy of a class raster against reference data."""
from __future__ import annotations

from typing import Any, Dict, Optional

from qgis.core import (QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback,
                       QgsProcessingOutputNumber, QgsProcessingParameterFileDestination,
                       QgsProcessingParameterRasterLayer)

from .base import EngineRun, RsSegAlgorithm, help_html, require_engine

SCORES = [("OVERALL_ACCURACY", "overall_accuracy", "Overall accuracy"),
          ("KAPPA", "kappa", "Cohen's kappa"), ("MIOU", "miou", "Mean IoU"),
          ("MF1", "mf1", "Mean F1")]


class EvaluateAlgorithm(RsSegAlgorithm):
    ID = "evaluate"
    DISPLAY = "Evaluate accuracy"
    GROUP = "Accuracy"
    GROUP_ID = "accuracy"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return help_html(
            "Compares a class raster with reference data and reports the confusion matrix, "
            "overall accuracy, kappa, per-class IoU/F1/precision/recall, mIoU and area-based "
            "accuracy estimates (Olofsson et al. 2014).",
            [("PREDICTION", "the class raster to assess (e.g. the output of Segment raster)"),
             ("REFERENCE_RASTER", "a reference class raster (aligned on the fly), or"),
             ("REFERENCE_POLYGONS", "reference polygons with a class field; text classes are "
                                    "matched to the prediction's class names"),
             ("CLASS_FIELD", "the class field of REFERENCE_POLYGONS"),
             ("IGNORE_VALUE", "reference value left out of the scores (e.g. 0)"),
             ("OUTPUT_REPORT", "the report as JSON"),
             ("OUTPUT_HTML", "optional self-contained HTML report")])

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("PREDICTION", "Class raster"))
        self.addParameter(QgsProcessingParameterRasterLayer(
            "REFERENCE_RASTER", "Reference raster", optional=True))
        self.add_class_polygons("REFERENCE_POLYGONS", "Reference polygons",
                                "Reference value to ignore")
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUTPUT_REPORT", "Accuracy report (JSON)", "JSON files (*.json)"))
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUTPUT_HTML", "Accuracy report (HTML)", "HTML files (*.html)", optional=True,
            createByDefault=False))
        for name, _, description in SCORES:
            self.addOutput(QgsProcessingOutputNumber(name, description))

    def processAlgorithm(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> Dict[str, Any]:  # noqa: N802
        require_engine()
        from engine.analysis.evaluation import evaluate

        raster = self.raster_input(parameters, "REFERENCE_RASTER", context, feedback)
        polygons = self.vector_input(parameters, "REFERENCE_POLYGONS", context, feedback)
        fields = self.parameterAsFields(parameters, "CLASS_FIELD", context)
        if bool(raster) == bool(polygons):
            raise QgsProcessingException("give the reference either as REFERENCE_RASTER or as "
                                         "REFERENCE_POLYGONS with a CLASS_FIELD (not both)")
        if polygons and not fields:
            raise QgsProcessingException("REFERENCE_POLYGONS needs CLASS_FIELD (the field "
                                         "holding the class)")
        report = self.parameterAsFileOutput(parameters, "OUTPUT_REPORT", context)
        page = self.parameterAsFileOutput(parameters, "OUTPUT_HTML", context) or None
        result = EngineRun(context, feedback).call(
            evaluate, self.raster_input(parameters, "PREDICTION", context, feedback),
            raster or polygons, report, html_report=page,
            class_field=fields[0] if polygons else None,
            ignore_value=self.optional_int(parameters, "IGNORE_VALUE", context),
            produces=[report, page])
        scores = {name: result.get(key) for name, key, _ in SCORES}
        feedback.pushInfo(", ".join(f"{name.lower()} {value:.4f}" for name, value in
                                    scores.items() if value is not None))
        return {"OUTPUT_REPORT": report, "OUTPUT_HTML": page, **scores}
