"""``rs_seg:export_onnx``: an RS Seg model as ONNX (with Deepness metadata)."""
from __future__ import annotations

from typing import Any, Dict, Optional

from qgis.core import (QgsProcessingContext, QgsProcessingFeedback, QgsProcessingOutputNumber,
                       QgsProcessingParameterBoolean, QgsProcessingParameterFile,
                       QgsProcessingParameterFileDestination)

from .base import MODEL_FILTER, EngineRun, RsSegAlgorithm, help_html, require_engine

ONNX_FILTER = "ONNX models (*.onnx)"


class ExportOnnxAlgorithm(RsSegAlgorithm):
    ID = "export_onnx"
    DISPLAY = "Export model to ONNX"
    GROUP = "Models"
    GROUP_ID = "models"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return help_html(
            "Writes an RS Seg model as an ONNX graph (opset 17) that onnxruntime runs without "
            "torch, and that the Deepness plugin loads as it is: the model card and Deepness's "
            "metadata are embedded, the normalisation is folded into the graph (input: bands / "
            "255) and the output is class probabilities. Before writing, onnxruntime's "
            "probabilities are checked against torch's.",
            [("MODEL", "the .rsmodel file to export"),
             ("DYNAMIC_SIZE", "let the window size vary (Deepness needs it fixed at the "
                              "model's tile: leave off for Deepness)"),
             ("OUTPUT", "the .onnx file")],
            "Change models export with two inputs (t1, t2) and multimodal models with image and "
            "aux; Deepness runs single-input segmentation models only. Architectures torch "
            "cannot export say why.")

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterFile(
            "MODEL", "Model file (.rsmodel)", behavior=QgsProcessingParameterFile.File,
            fileFilter=MODEL_FILTER))
        self.addParameter(QgsProcessingParameterBoolean(
            "DYNAMIC_SIZE", "Dynamic window size (not for Deepness)", defaultValue=False))
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT", "ONNX model",
                                                                ONNX_FILTER))
        self.addOutput(QgsProcessingOutputNumber(
            "MAX_ABS_DIFF", "Largest probability difference onnxruntime vs torch"))

    def processAlgorithm(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> Dict[str, Any]:  # noqa: N802
        require_engine()
        from engine.formats.onnx.export import export_onnx, summary_line

        output = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        result = EngineRun(context, feedback, [output]).call(
            export_onnx, self.parameterAsFile(parameters, "MODEL", context), output,
            dynamic_size=self.parameterAsBoolean(parameters, "DYNAMIC_SIZE", context),
            produces=[output])
        feedback.pushInfo(summary_line(result))
        for note in result["notes"]:
            feedback.pushInfo(f"note: {note}")
        return {"OUTPUT": output, "MAX_ABS_DIFF": result["max_abs_diff"]}
