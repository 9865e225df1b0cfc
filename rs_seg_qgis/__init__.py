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


_make_engine_importable()


def classFactory(iface):  # noqa: N802 (QGIS plugin entry point)
    """QGIS entry point."""
    from .plugin import RsSegPlugin
    return RsSegPlugin(iface)
