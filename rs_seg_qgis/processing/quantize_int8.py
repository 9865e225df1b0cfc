"""``rs_seg:quantize_int8``: a model's int8 graph for faster CPU inference, checked against fp32."""
from __future__ import annotations

from typing import Any, Dict, Optional

from qgis.core import (QgsProcessingContext, QgsProcessingFeedback, QgsProcessingOutputNumber,
                       QgsProcessingParameterFile, QgsProcessingParameterRasterLayer)

from .base import MODEL_FILTER, EngineRun, RsSegAlgorithm, help_html, require_engine


class QuantizeInt8Algorithm(RsSegAlgorithm):
    ID = "quantize_int8"
    DISPLAY = "Quantise model to int8 (faster on CPU)"
    GROUP = "Models"
    GROUP_ID = "models"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return help_html(
            "Makes the int8 version of a segmentation model for faster inference on the CPU "
            "(ONNX Runtime static quantisation, calibrated on tiles of a raster). The class it "
            "gives is compared with the full-precision model's on those tiles: below 99 % "
            "agreement it is refused; otherwise the agreement is written into the model card "
            "and Segment raster runs it with Precision int8.",
            [("MODEL", "the .rsmodel file (single-input segmentation model)"),
             ("CALIBRATION", "imagery like the one the model will segment (default: the "
                             "training rasters named in the model card)"),
             ("WINDOWS", "how many model tiles to calibrate on"),
             ("AGREEMENT", "share of calibration pixels given the same class as full "
                           "precision")])

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterFile(
            "MODEL", "Model file (.rsmodel)", behavior=QgsProcessingParameterFile.File,
            fileFilter=MODEL_FILTER))
        self.addParameter(QgsProcessingParameterRasterLayer(
            "CALIBRATION", "Calibration raster (empty: the model's training rasters)",
            optional=True))
        self.add_int("WINDOWS", "Calibration tiles", default=16, minimum=1)
        self.addOutput(QgsProcessingOutputNumber("AGREEMENT", "Class agreement with fp32"))

    def processAlgorithm(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> Dict[str, Any]:  # noqa: N802
        model = self.parameterAsFile(parameters, "MODEL", context)
        require_engine(model)
        from engine.formats.onnx.quantize import export_int8

        record = EngineRun(context, feedback, []).call(
            export_int8, model, self.raster_input(parameters, "CALIBRATION", context, feedback),
            self.parameterAsInt(parameters, "WINDOWS", context))
        feedback.pushInfo(f"int8 agrees with fp32 on {100 * record['agreement']:.2f} % of "
                          f"{record['windows']} calibration tiles; recorded in {model}")
        return {"AGREEMENT": record["agreement"]}
