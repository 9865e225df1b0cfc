"""``rs_seg:pretrain``: self-supervised pre-training (GLCNet) on unlabelled rasters."""
from __future__ import annotations

from typing import Any, Dict, Optional

from qgis.core import (QgsProcessing, QgsProcessingContext, QgsProcessingException,
                       QgsProcessingFeedback, QgsProcessingOutputNumber,
                       QgsProcessingParameterFileDestination, QgsProcessingParameterMultipleLayers,
                       QgsProcessingParameterNumber)

from engine.formats.catalog import SELF_SUPERVISED

from .base import MODEL_FILTER, EngineRun, RsSegAlgorithm, help_html, require_engine


class PretrainAlgorithm(RsSegAlgorithm):
    ID = "pretrain"
    DISPLAY = "Pre-train on unlabelled images"
    GROUP = "Training"
    GROUP_ID = "training"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return help_html(
            "Pre-trains a segmentation network without labels (GLCNet: global style and local "
            "matching contrastive learning) on your own imagery. The result is a starting point "
            "for 'Train segmentation model' (its INIT_MODEL), which then needs fewer labels.",
            [("INPUT", "unlabelled images (same bands); more and more varied is better"),
             ("ARCHITECTURE", "glcnet or unet (networks with a self-supervised hook)"),
             ("EPOCHS", "passes over the images (default 100; the paper uses 400)"),
             ("BATCH_SIZE", "windows per step (default 16; larger helps contrastive learning)"),
             ("TILE_SIZE", "edge of the two augmented views in pixels (default 224)"),
             ("PATCH_SIZE / PATCH_NUM", "matched local regions per window: their edge (default "
                                        "48, at most half the tile) and number (default 4)"),
             ("LEARNING_RATE", "Adam learning rate (default 1e-3)"),
             ("DEVICE", "auto, cpu or cuda"),
             ("OUTPUT_MODEL", "the pre-trained model (.rsmodel, no classes)")],
            "Cancelling keeps the best model saved so far and the checkpoint <model>.last.ckpt.")

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "INPUT", "Unlabelled images", QgsProcessing.TypeRaster))
        names = list(SELF_SUPERVISED)
        self.add_enum("ARCHITECTURE", "Architecture", names,
                      "glcnet" if "glcnet" in names else None)
        self.add_int("EPOCHS", "Epochs", default=100, minimum=1)
        self.add_int("BATCH_SIZE", "Batch size", default=16, minimum=1)
        self.add_int("TILE_SIZE", "View size in pixels", default=224, minimum=16)
        self.add_int("PATCH_SIZE", "Local patch size in pixels", default=48, minimum=1,
                     advanced=True)
        self.add_int("PATCH_NUM", "Local patches per window", default=4, minimum=1,
                     advanced=True)
        self.addParameter(QgsProcessingParameterNumber(
            "LEARNING_RATE", "Learning rate", QgsProcessingParameterNumber.Double, 1e-3,
            minValue=1e-8))
        self.add_device()
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUTPUT_MODEL", "Pre-trained model", MODEL_FILTER))
        self.addOutput(QgsProcessingOutputNumber("BEST_LOSS", "Lowest mean loss"))

    def processAlgorithm(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> Dict[str, Any]:  # noqa: N802
        require_engine()
        from engine.training.checkpoints import saying_what_a_cancel_keeps
        from engine.training.pretrain import pretrain

        images = self.raster_inputs(parameters, "INPUT", context, feedback)
        if not images:
            raise QgsProcessingException("INPUT: give at least one image")
        out = self.parameterAsFileOutput(parameters, "OUTPUT_MODEL", context)
        result = EngineRun(context, feedback).call(
            saying_what_a_cancel_keeps(pretrain, out, "python -m engine pretrain"), images,
            self.parameterAsEnumString(parameters, "ARCHITECTURE", context),
            out, epochs=self.parameterAsInt(parameters, "EPOCHS", context),
            batch_size=self.parameterAsInt(parameters, "BATCH_SIZE", context),
            crop=self.parameterAsInt(parameters, "TILE_SIZE", context),
            patch_size=self.parameterAsInt(parameters, "PATCH_SIZE", context),
            patch_num=self.parameterAsInt(parameters, "PATCH_NUM", context),
            lr=self.parameterAsDouble(parameters, "LEARNING_RATE", context),
            device=self.parameterAsEnumString(parameters, "DEVICE", context),
            task_name="pre-training")
        feedback.pushInfo(f"lowest loss {result['best_loss']:.4f} at epoch "
                          f"{result['best_epoch']} of {result['epochs_run']}")
        return {"OUTPUT_MODEL": out, "BEST_LOSS": result["best_loss"]}
