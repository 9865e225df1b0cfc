"""``rs_seg:train_change``: train a change model from image pairs and change labels."""
from __future__ import annotations

from typing import Any, Dict, List

from qgis.core import (QgsProcessing, QgsProcessingContext, QgsProcessingException,
                       QgsProcessingFeedback, QgsProcessingParameterMultipleLayers)

from .training import TrainAlgorithm


class TrainChangeAlgorithm(TrainAlgorithm):
    ID = "train_change"
    DISPLAY = "Train change model"
    TASK = "change"
    DEFAULT_ARCHITECTURE = "fcsiamdiff"
    SUMMARY = ("Trains a change-detection model from before/after image pairs and change "
               "labels (0 = no change, any other value = change) and writes a model file, "
               "plus a training history and curves.")
    INPUT_HELP = [("INPUT_T1", "the 'before' images"),
                  ("INPUT_T2", "the 'after' images, one per before image, in the same order")]

    def add_image_inputs(self) -> None:
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "INPUT_T1", "Before images (date 1)", QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "INPUT_T2", "After images (date 2, same order)", QgsProcessing.TypeRaster))

    def image_inputs(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                     feedback: QgsProcessingFeedback) -> Dict[str, List[str]]:
        before = self.raster_inputs(parameters, "INPUT_T1", context, feedback)
        after = self.raster_inputs(parameters, "INPUT_T2", context, feedback)
        if not before or len(before) != len(after):
            raise QgsProcessingException(f"give one INPUT_T2 image per INPUT_T1 image "
                                         f"({len(before)} before, {len(after)} after)")
        return {"images": before, "images2": after}
