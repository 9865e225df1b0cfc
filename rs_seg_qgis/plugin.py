"""Plugin object: registers the Processing provider (headless) and the GUI entries (desktop)."""
from __future__ import annotations

from qgis.core import QgsApplication

from .processing.provider import RsSegProvider


class RsSegPlugin:
    """Created by QGIS through ``classFactory``; ``initProcessing`` is all qgis_process calls."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider: RsSegProvider | None = None

    def initProcessing(self) -> None:  # noqa: N802 (QGIS API)
        if self.provider is None:
            self.provider = RsSegProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 (QGIS API)
        self.initProcessing()

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
