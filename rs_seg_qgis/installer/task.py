"""The install as a QgsTask (task manager entry, progress, cancel) and what happens after it.

``run()`` (worker thread) only calls :func:`install.install`; ``finished()`` (main thread)
puts the new folder on sys.path and refreshes the provider, then calls ``on_done``.
"""
from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from . import folder, install, pip
from .choices import Choice

LOG_TAG = "RS Seg"
# Modules a new install cannot replace in a running QGIS once imported (compiled extensions).
RUNTIMES = ("torch", "onnxruntime", "safetensors")
_LIVE: List["InstallTask"] = []  # Python must keep running tasks alive (QGIS owns the C++ side)


def private_root() -> Path:
    """The private folder of the running QGIS profile."""
    return folder.default_root(QgsApplication.qgisSettingsDirPath())


def make_live(root: Path, installed: Sequence[str] = ()) -> str:
    """After an install: the new folder on sys.path, the provider's algorithms refreshed.

    ``installed`` names the new packages.  Returns one sentence for the user: ready now, or
    restart QGIS when an older torch/onnxruntime is already imported (compiled modules cannot
    be reloaded) or the engine already chose its array backend without the new torch.
    """
    folder.activate(root)
    loaded = [name for name in RUNTIMES if name in sys.modules]
    new = {pip.canonical(name) for name in installed}
    if "torch" in new and "torch" not in loaded and "engine.compute.backend" in sys.modules:
        loaded.append("the engine (without torch)")
    provider = QgsApplication.processingRegistry().providerById("rs_seg")
    if provider is not None:
        provider.refreshAlgorithms()
    if loaded:
        return (f"Restart QGIS to use the new packages: this session already loaded "
                f"{', '.join(loaded)}.")
    return "The RS Seg algorithms can use them now; no restart needed."


class InstallTask(QgsTask):
    """Installs one choice; ``line`` carries pip's output to the dialog (queued, main thread)."""

    line = pyqtSignal(str)

    def __init__(self, choice: Choice, options: pip.PipOptions, root: Path,
                 on_done: Optional[Callable[["InstallTask"], None]] = None) -> None:
        super().__init__(f"RS Seg: install {choice.label.split(' (')[0]}", QgsTask.CanCancel)
        self.choice, self.options, self.root = choice, options, root
        self.on_done = on_done
        self.result: Optional[install.InstallResult] = None
        self.error = ""
        self.message = ""  # the user-facing outcome, set in finished()

    def run(self) -> bool:
        try:
            self.result = install.install(self.choice, self.options, self.root,
                                          progress=self._progress, cancelled=self.isCanceled)
            return True
        except install.InstallCancelled:
            self.error = "cancelled"
        except install.InstallError as exc:
            self.error = str(exc)
        except Exception as exc:  # unexpected: the traceback goes to the log, not a dialog
            self.error = f"{type(exc).__name__}: {exc}"
            QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.Critical)
        return False

    def _progress(self, fraction: float, text: str) -> None:
        self.setProgress(100.0 * fraction)
        if text:
            self.line.emit(text)

    def finished(self, result: bool) -> None:  # noqa: D401 (QgsTask API; main thread)
        if self in _LIVE:
            _LIVE.remove(self)
        if result and self.result is not None:
            self.message = f"Installed {self.choice.label.split(' (')[0]}. " + \
                make_live(self.root, [name for name, _ in self.result.packages])
        elif not self.error:
            self.error = "cancelled" if self.isCanceled() else "the install failed"
        if not result:
            self.message = ("Install cancelled; the previous packages are unchanged."
                            if self.error == "cancelled" else
                            f"Install failed; the previous packages are unchanged. {self.error}")
        QgsMessageLog.logMessage(self.message, LOG_TAG, Qgis.Success if result else Qgis.Warning)
        if self.on_done is not None:
            try:
                self.on_done(self)
            except Exception:  # a closed dialog must not raise into the task manager
                QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.Critical)


def start_install(choice: Choice, options: pip.PipOptions, root: Optional[Path] = None,
                  on_done: Optional[Callable[[InstallTask], None]] = None) -> InstallTask:
    """Start the install task in QGIS's task manager and keep it alive until it finished."""
    task = InstallTask(choice, options, root or private_root(), on_done)
    _LIVE.append(task)
    QgsApplication.taskManager().addTask(task)
    return task
