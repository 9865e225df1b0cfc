"""``rs_seg:train_segmentation``: train a segmentation model from images and labels."""
from __future__ import annotations

from typing import Any, Dict, List

from qgis.core import (QgsProcessing, QgsProcessingContext, QgsProcessingException,
                       QgsProcessingFeedback, QgsProcessingParameterMultipleLayers)

from .training import TrainAlgorithm


class TrainSegmentationAlgorithm(TrainAlgorithm):
    ID = "train_segmentation"
    DISPLAY = "Train segmentation model"
    TASK = "segmentation"
    DEFAULT_ARCHITECTURE = "unet"
    SUMMARY = ("Trains a segmentation model from one or more images and their labels (label "
               "rasters or digitised polygons) and writes a model file with its class names "
               "and colours, plus a training history and curves.")
    INPUT_HELP = [("INPUT", "training images (same bands, e.g. R,G,B,NIR)"),
                  ("AUX_INPUT", "optional auxiliary rasters (e.g. DSM), one per image, in the "
                                "same order")]

    def add_image_inputs(self) -> None:
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "INPUT", "Training images", QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "AUX_INPUT", "Auxiliary rasters (one per image)", QgsProcessing.TypeRaster,
            optional=True))

    def image_inputs(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                     feedback: QgsProcessingFeedback) -> Dict[str, List[str]]:
        images = self.raster_inputs(parameters, "INPUT", context, feedback)
        if not images:
            raise QgsProcessingException("INPUT: give at least one training image")
        return {"images": images,
                "aux": self.raster_inputs(parameters, "AUX_INPUT", context, feedback)}
