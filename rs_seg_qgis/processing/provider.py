"""The ``rs_seg`` Processing provider."""
from __future__ import annotations

from pathlib import Path

from qgis.core import QgsMessageLog, QgsProcessingProvider, Qgis
from qgis.PyQt.QtGui import QIcon

from ..deps import install_hint, missing_modules


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

    def loadAlgorithms(self) -> None:  # noqa: N802 (QGIS API)
        missing = missing_modules()
        if missing:
            QgsMessageLog.logMessage(install_hint(missing), "RS Seg", Qgis.Warning)
