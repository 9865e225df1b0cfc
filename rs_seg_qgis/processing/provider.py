"""The ``rs_seg`` Processing provider."""
from __future__ import annotations

from pathlib import Path
from typing import List

from qgis.core import Qgis, QgsMessageLog, QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..deps import environment, install_hint, missing_modules
from .detect_change import DetectChangeAlgorithm
from .download_model import DownloadModelAlgorithm
from .evaluate import EvaluateAlgorithm
from .export_onnx import ExportOnnxAlgorithm
from .pretrain import PretrainAlgorithm
from .quantize_int8 import QuantizeInt8Algorithm
from .refine_model import RefineModelAlgorithm
from .review_places import ReviewPlacesAlgorithm
from .segment import SegmentAlgorithm
from .segment_folder import SegmentFolderAlgorithm
from .segment_point import SegmentPointAlgorithm
from .train_change import TrainChangeAlgorithm
from .train_segmentation import TrainSegmentationAlgorithm
from .vectorize import VectorizeAlgorithm

ALGORITHMS = (SegmentAlgorithm, SegmentPointAlgorithm, VectorizeAlgorithm, DetectChangeAlgorithm,
              TrainSegmentationAlgorithm, TrainChangeAlgorithm, PretrainAlgorithm,
              EvaluateAlgorithm, ExportOnnxAlgorithm, QuantizeInt8Algorithm,
              SegmentFolderAlgorithm, DownloadModelAlgorithm, RefineModelAlgorithm,
              ReviewPlacesAlgorithm)


class RsSegProvider(QgsProcessingProvider):
    """Registers RS Seg's algorithms; loads (and explains) even when torch is missing."""

    def id(self) -> str:
        return "rs_seg"

    def name(self) -> str:
        return "RS Seg"

    def longName(self) -> str:  # noqa: N802 (QGIS API)
        return "RS Seg — deep-learning segmentation and change detection"

    def icon(self) -> QIcon:
        return QIcon(str(Path(__file__).resolve().parent.parent / "icon.svg"))

    def supportedOutputRasterLayerExtensions(self) -> List[str]:  # noqa: N802 (QGIS API)
        return ["tif"]  # the engine writes tiled, compressed GeoTIFFs

    def supportedOutputVectorLayerExtensions(self) -> List[str]:  # noqa: N802 (QGIS API)
        return ["gpkg"]  # the engine writes GeoPackages

    def loadAlgorithms(self) -> None:  # noqa: N802 (QGIS API)
        env = environment()  # inference-only is complete: no warning for a missing torch
        if env.state == "none":
            QgsMessageLog.logMessage(install_hint(missing_modules()), "RS Seg", Qgis.Warning)
        elif env.state == "inference":
            QgsMessageLog.logMessage(env.summary, "RS Seg", Qgis.Info)
        for algorithm in ALGORITHMS:
            self.addAlgorithm(algorithm())
