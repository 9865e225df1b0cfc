"""Background tasks for the GUI: Processing algorithms and single engine calls as QgsTasks.

Rules (QgsTask): ``run()`` happens on a worker thread and never touches widgets or the project;
the completion callbacks run from ``finished()``/``executed``, on the main thread.  Python must
keep the task, its context and its feedback alive until it finishes (QGIS owns only the C++
side), hence ``_LIVE``.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from qgis.core import (Qgis, QgsApplication, QgsMessageLog, QgsProcessingAlgRunnerTask,
                       QgsProcessingContext, QgsProcessingFeedback, QgsProject, QgsTask)
from qgis.PyQt.QtCore import pyqtSignal

LOG_TAG = "RS Seg"

# Tasks started here and the objects they need, until their completion callback ran.
_LIVE: Dict[int, tuple] = {}


class RunError(Exception):
    """A run could not start; the message tells the user what to change."""


@dataclass
class RunOutcome:
    """How a background run ended, handed to the completion callback on the main thread."""

    ok: bool
    results: Dict[str, Any] = field(default_factory=dict)
    error: str = ""
    cancelled: bool = False
    log: List[str] = field(default_factory=list)


class RunFeedback(QgsProcessingFeedback):
    """Processing feedback that also emits every log/progress text as ``line`` (queued to the
    main thread by Qt, since it is emitted from the worker) and keeps the reported errors."""

    line = pyqtSignal(str)

    def __init__(self) -> None:
        super().__init__()
        self.errors: List[str] = []
        self.lines: List[str] = []

    def _emit(self, text: str) -> None:
        if text:
            self.lines.append(text)
            self.line.emit(text)

    def pushInfo(self, info: str) -> None:  # noqa: N802 (QGIS API)
        super().pushInfo(info)
        self._emit(info)

    def pushWarning(self, warning: str) -> None:  # noqa: N802 (QGIS API)
        super().pushWarning(warning)
        self._emit(f"Warning: {warning}")

    def setProgressText(self, text: str) -> None:  # noqa: N802 (QGIS API)
        super().setProgressText(text)
        self._emit(text)

    def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N802,N803
        super().reportError(error, fatalError)
        self.errors.append(error)
        self._emit(f"Error: {error}")


def start_algorithm(algorithm_id: str, parameters: Dict[str, Any], description: str,
                    on_done: Callable[[RunOutcome], None],
                    on_line: Optional[Callable[[str], None]] = None,
                    on_progress: Optional[Callable[[float], None]] = None,
                    project: Optional[QgsProject] = None) -> QgsProcessingAlgRunnerTask:
    """Run a Processing algorithm as a QgsTask (listed in the task manager, cancellable).

    Parameters are checked first (missing torch, missing inputs): a problem raises
    :class:`RunError` right away instead of starting a task.  Outputs are not loaded by
    Processing: ``on_done`` gets their paths and adds them where the GUI wants them.
    """
    registry = QgsApplication.processingRegistry()
    algorithm = registry.algorithmById(algorithm_id)
    if algorithm is None:
        raise RunError(f"the Processing algorithm {algorithm_id} is not registered; enable the "
                       f"RS Seg plugin (Plugins ▸ Manage and Install Plugins)")
    context = QgsProcessingContext()
    context.setProject(project or QgsProject.instance())
    ok, message = algorithm.checkParameterValues(parameters, context)
    if not ok:
        raise RunError(message)
    feedback = RunFeedback()
    if on_line is not None:
        feedback.line.connect(on_line)
    if on_progress is not None:
        feedback.progressChanged.connect(on_progress)
    task = QgsProcessingAlgRunnerTask(algorithm, parameters, context, feedback)
    task.setDescription(description)
    key = id(task)

    def executed(success: bool, results: Dict[str, Any]) -> None:
        _LIVE.pop(key, None)
        cancelled = feedback.isCanceled()
        error = "" if success else (feedback.errors[-1] if feedback.errors else
                                    "cancelled" if cancelled else "the run failed; see the log")
        try:
            on_done(RunOutcome(bool(success), dict(results or {}), error, cancelled,
                               list(feedback.lines)))
        except Exception:  # e.g. the dock was closed meanwhile: log it, never a dialog
            QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.Critical)

    task.executed.connect(executed)
    _LIVE[key] = (task, context, feedback)
    if task.isCanceled():  # prepare() failed in the constructor: the task would never run
        _LIVE.pop(key, None)
        raise RunError(feedback.errors[-1] if feedback.errors else
                       f"{algorithm_id} could not prepare its inputs")
    QgsApplication.taskManager().addTask(task)
    return task


class FunctionTask(QgsTask):
    """Calls one engine function in ``run()``; ``on_done(task)`` runs on the main thread.

    The function gets ``progress`` and ``cancelled`` keyword arguments (the engine's job
    protocol).  After the run, ``result`` holds its return value or ``error`` a user-facing
    message (engine errors as they are; anything else with its type, traceback in the log).
    """

    def __init__(self, description: str, function: Callable[..., Any],
                 on_done: Callable[["FunctionTask"], None]) -> None:
        super().__init__(description, QgsTask.CanCancel)
        self.function = function
        self.on_done = on_done
        self.result: Any = None
        self.error = ""

    def run(self) -> bool:
        from engine.jobs import Cancelled, EngineError
        try:
            self.result = self.function(progress=self._progress, cancelled=self.isCanceled)
            return True
        except Cancelled:
            self.error = "cancelled"
        except EngineError as exc:
            self.error = str(exc)
        except Exception as exc:  # unexpected: keep the traceback for the log, not a dialog
            self.error = f"{type(exc).__name__}: {exc}"
            QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.Critical)
        return False

    def _progress(self, fraction: float, message: str = "") -> None:
        if fraction >= 0:
            self.setProgress(100.0 * fraction)

    def finished(self, result: bool) -> None:  # noqa: D401 (QgsTask API; main thread)
        _LIVE.pop(id(self), None)
        if not result and not self.error:
            self.error = "cancelled" if self.isCanceled() else "the task failed"
        try:
            self.on_done(self)
        except Exception:  # a broken callback must not raise into QGIS's task manager
            QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.Critical)


def start_function(description: str, function: Callable[..., Any],
                   on_done: Callable[[FunctionTask], None]) -> FunctionTask:
    """Start ``function`` in a :class:`FunctionTask` and keep it alive until it finished."""
    task = FunctionTask(description, function, on_done)
    _LIVE[id(task)] = (task,)
    QgsApplication.taskManager().addTask(task)
    return task


def running_tasks() -> int:
    """How many tasks started here have not finished (for tests and unload)."""
    return len(_LIVE)


def wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    """Process events until ``predicate()`` is true or ``timeout_s`` passed (tests, scripts)."""
    import time
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            return False
        QgsApplication.processEvents()
        time.sleep(0.01)
    return True
