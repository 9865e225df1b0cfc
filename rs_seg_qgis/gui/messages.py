"""User messages in QGIS's message bar, and the guard that keeps tracebacks out of dialogs."""
from __future__ import annotations

import functools
import traceback
from typing import Any, Callable, Optional

from qgis.core import Qgis, QgsMessageLog

TITLE = "RS Seg"
LOG_TAG = "RS Seg"


class InputProblem(ValueError):
    """Something the user chose (or left empty) cannot work; the message says what to change."""


def notify(iface: Any, text: str, level: int = Qgis.Info, duration: int = 6) -> None:
    """Push ``text`` to the message bar (warnings and errors stay until dismissed)."""
    if level in (Qgis.Warning, Qgis.Critical):
        duration = 0
    QgsMessageLog.logMessage(text, LOG_TAG, level)
    if iface is not None:
        iface.messageBar().pushMessage(TITLE, text, level, duration)


SUCCESS_DELAY_MS = 400   # after QGIS's own "Task complete" item, so ours is the one on top
SUCCESS_SECONDS = 12


def notify_done(iface: Any, text: str) -> None:
    """A success message that stays readable: pushed once QGIS has posted its own task
    messages (the newest item is the one shown), and kept for :data:`SUCCESS_SECONDS`."""
    from qgis.PyQt.QtCore import QTimer
    QTimer.singleShot(SUCCESS_DELAY_MS,
                      lambda: notify(iface, text, Qgis.Success, SUCCESS_SECONDS))


def error_text(exc: BaseException) -> str:
    """The user-facing text of an exception: engine/input problems as they are, others typed."""
    from ..tasks import RunError
    try:
        from engine.jobs import EngineError
    except ImportError:  # engine not importable: nothing of its type can be raised
        EngineError = InputProblem  # noqa: N806
    if isinstance(exc, (InputProblem, RunError, EngineError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def guarded(iface_of: Callable[[Any], Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a slot so an exception becomes a message-bar warning, never a traceback dialog.

    ``iface_of(self)`` returns the iface to report to.  Expected problems (InputProblem,
    RunError, engine errors) are warnings; anything else is critical and its traceback is logged.
    """
    def decorate(slot: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(slot)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Optional[Any]:
            try:
                return slot(self, *args, **kwargs)
            except InputProblem as exc:
                notify(iface_of(self), str(exc), Qgis.Warning)
            except Exception as exc:  # noqa: BLE001 — the point is to catch everything
                level = Qgis.Critical
                from ..tasks import RunError
                if isinstance(exc, RunError):
                    level = Qgis.Warning
                else:
                    QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.Critical)
                notify(iface_of(self), error_text(exc), level)
            return None
        return wrapper
    return decorate
