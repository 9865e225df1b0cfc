"""Plugin start: the private folder onto sys.path before anything imports torch, and what the
first-run prompt needs to know (missing runtimes, a broken folder)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

from qgis.core import Qgis, QgsMessageLog

from .. import deps
from . import folder
from .task import LOG_TAG, private_root


def activate_at_start(root: Optional[Path] = None) -> folder.Health:
    """Clean up old installs, put the live folder first on sys.path, log what is wrong."""
    root = root or private_root()
    folder.cleanup(root)
    health = folder.activate(root)
    if health.state == "broken":
        QgsMessageLog.logMessage(f"{health.problem}; it is not used. Repair it with "
                                 f"{deps.INSTALL_BUTTON}", LOG_TAG, Qgis.Warning)
    for name, _ in deps.PINNED_RUNTIMES:
        problem = deps.version_problem(name)
        if problem:
            QgsMessageLog.logMessage(problem, LOG_TAG, Qgis.Warning)
    return health


def missing_runtimes() -> List[str]:
    """torch and onnxruntime when neither is usable (each missing or outside its pin)."""
    if deps.environment().state != "none":
        return []
    return [name for name, _ in deps.PINNED_RUNTIMES]


def prompt(root: Optional[Path] = None) -> Optional[Tuple[str, str]]:
    """The first-run prompt (sentence, button text), or None when nothing needs doing."""
    health = folder.check(root or private_root())
    if health.state == "broken":
        return f"RS Seg's packages folder is damaged ({health.problem}).", "Repair…"
    if missing_runtimes():
        return "torch or onnxruntime is missing in QGIS's Python.", "Install dependencies…"
    return None
