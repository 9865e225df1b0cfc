"""RS Seg QGIS plugin: the thin QGIS face of the ``engine`` package."""
import sys
from pathlib import Path


def _make_engine_importable() -> None:
    """Put the folder holding ``engine`` on sys.path: ``_vendor/`` inside a packaged plugin, or
    the working tree's root.  Never the plugin folder itself: its ``processing`` subpackage would
    shadow QGIS's own ``processing`` package."""
    here = Path(__file__).resolve().parent
    for root in (here / "_vendor", here.parent):
        if (root / "engine" / "__init__.py").is_file():
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
            return


def _use_private_packages() -> None:
    """Put RS Seg's private packages folder (the installer's) first on sys.path, before
    anything imports torch; a damaged folder is reported, never fatal."""
    try:
        from .installer.startup import activate_at_start
        activate_at_start()
    except Exception:  # noqa: BLE001 — the plugin must load and explain, whatever happened
        import traceback
        from qgis.core import Qgis, QgsMessageLog
        QgsMessageLog.logMessage(traceback.format_exc(), "RS Seg", Qgis.Warning)


_make_engine_importable()
_use_private_packages()


def classFactory(iface):  # noqa: N802 (QGIS plugin entry point)
    """QGIS entry point."""
    from .plugin import RsSegPlugin
    return RsSegPlugin(iface)
