"""Shared parameters and run of the two training algorithms (segmentation, change)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from qgis.core import (QgsProcessing, QgsProcessingContext, QgsProcessingException,
                       QgsProcessingFeedback, QgsProcessingOutputFile, QgsProcessingOutputNumber,
                       QgsProcessingParameterFileDestination,
                       QgsProcessingParameterMultipleLayers, QgsProcessingParameterNumber)

from .base import MODEL_FILTER, EngineRun, RsSegAlgorithm, architectures, help_html, require_engine

COMMON_HELP: List[Tuple[str, str]] = [
    ("LABELS", "label rasters of class values, one per image in the same order (or use "
               "LABEL_POLYGONS)"),
    ("LABEL_POLYGONS", "digitised polygons with a class field, instead of LABELS"),
    ("CLASS_FIELD", "the field of LABEL_POLYGONS holding the class (integer value or name)"),
    ("IGNORE_VALUE", "label value that is not learnt (e.g. 0 for 'unlabelled')"),
    ("ARCHITECTURE", "the network (see the model zoo in the documentation)"),
    ("EPOCHS", "passes over the training windows (typical 20–100; stops early when the "
               "validation score stalls)"),
    ("BATCH_SIZE", "windows per step (8 on a GPU; lower it on out-of-memory errors)"),
    ("TILE_SIZE", "training window edge in pixels (typical 256)"),
    ("LEARNING_RATE", "AdamW learning rate (typical 1e-3; lower it if the loss explodes)"),
    ("VALIDATION_FRACTION", "share of spatial blocks held out for validation (typical 0.2)"),
    ("INIT_MODEL", "optional model to start from (fine-tuning); matching layers are copied"),
    ("DEVICE", "auto, cpu or cuda"),
    ("OUTPUT_MODEL", "the trained model (.rsmodel); the training history (JSON) and curves "
                     "(PNG) are written beside it"),
]


class TrainAlgorithm(RsSegAlgorithm):
    """Training: subclasses declare their image inputs and set TASK."""

    GROUP = "Training"
    GROUP_ID = "training"
    TASK = ""
    SUMMARY = ""
    INPUT_HELP: Sequence[Tuple[str, str]] = ()
    DEFAULT_ARCHITECTURE = ""

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return help_html(self.SUMMARY, [*self.INPUT_HELP, *COMMON_HELP],
                         "Cancelling keeps the best model saved so far and the checkpoint "
                         "<model>.last.ckpt, from which 'python -m engine train --resume' "
                         "continues.")

    def add_image_inputs(self) -> None:
        """Declare the image parameters of this task."""
        raise NotImplementedError

    def image_inputs(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                     feedback: QgsProcessingFeedback) -> Dict[str, List[str]]:
        """``TrainConfig`` image arguments (``images``, ``images2``, ``aux``) as files."""
        raise NotImplementedError

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:  # noqa: N802
        self.add_image_inputs()
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "LABELS", "Label rasters (one per image)", QgsProcessing.TypeRaster, optional=True))
        self.add_class_polygons("LABEL_POLYGONS", "Label polygons", "Label value to ignore")
        names = architectures(self.TASK)
        default = self.DEFAULT_ARCHITECTURE if self.DEFAULT_ARCHITECTURE in names else None
        self.add_enum("ARCHITECTURE", "Architecture", names, default)
        self.add_int("EPOCHS", "Epochs", default=20, minimum=1)
        self.add_int("BATCH_SIZE", "Batch size", default=8, minimum=1)
        self.add_int("TILE_SIZE", "Tile size in pixels", default=256, minimum=16)
        self.addParameter(QgsProcessingParameterNumber(
            "LEARNING_RATE", "Learning rate", QgsProcessingParameterNumber.Double, 1e-3,
            minValue=1e-8))
        self.addParameter(QgsProcessingParameterNumber(
            "VALIDATION_FRACTION", "Validation fraction", QgsProcessingParameterNumber.Double,
            0.2, minValue=0.0, maxValue=0.9))
        self.add_model("INIT_MODEL", "Initial model (fine-tuning)", optional=True)
        self.add_device()
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUTPUT_MODEL", "Trained model", MODEL_FILTER))
        self.addOutput(QgsProcessingOutputFile("OUTPUT_HISTORY", "Training history (JSON)"))
        self.addOutput(QgsProcessingOutputFile("OUTPUT_CURVES", "Training curves (PNG)"))
        self.addOutput(QgsProcessingOutputNumber("BEST_METRIC", "Best validation score"))

    def processAlgorithm(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> Dict[str, Any]:  # noqa: N802
        require_engine()
        from engine.training import train

        out = self.parameterAsFileOutput(parameters, "OUTPUT_MODEL", context)
        labels = self.raster_inputs(parameters, "LABELS", context, feedback)
        polygons = self.vector_input(parameters, "LABEL_POLYGONS", context, feedback)
        if bool(labels) == bool(polygons):
            raise QgsProcessingException("give the labels either as LABELS rasters or as "
                                         "LABEL_POLYGONS with a CLASS_FIELD (not both)")
        fields = self.parameterAsFields(parameters, "CLASS_FIELD", context)
        run = EngineRun(context, feedback)
        result = run.call(
            train, out=out, task=self.TASK, labels=labels, polygons=polygons,
            class_field=fields[0] if fields else None,
            ignore_value=self.optional_int(parameters, "IGNORE_VALUE", context),
            arch=self.parameterAsEnumString(parameters, "ARCHITECTURE", context),
            epochs=self.parameterAsInt(parameters, "EPOCHS", context),
            batch_size=self.parameterAsInt(parameters, "BATCH_SIZE", context),
            tile=self.parameterAsInt(parameters, "TILE_SIZE", context),
            lr=self.parameterAsDouble(parameters, "LEARNING_RATE", context),
            val_fraction=self.parameterAsDouble(parameters, "VALIDATION_FRACTION", context),
            init=self.parameterAsFile(parameters, "INIT_MODEL", context) or None,
            device=self.parameterAsEnumString(parameters, "DEVICE", context),
            cancel_message=f"training cancelled by the user; {out} holds the best model of the "
                           f"finished epochs (if any)",
            **self.image_inputs(parameters, context, feedback))
        feedback.pushInfo(f"best validation score {result['best_metric']:.4f} after "
                          f"{result['epochs_run']} epoch(s), {result['seconds']:.0f} s")
        return {"OUTPUT_MODEL": out, "OUTPUT_HISTORY": result.get("history"),
                "OUTPUT_CURVES": result.get("curves"), "BEST_METRIC": result["best_metric"]}
