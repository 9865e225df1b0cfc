"""One background thread that always works on the latest request: the hover preview's runner.

Mouse moves arrive far faster than a decode finishes; queueing them would show masks for
positions the cursor left long ago.  :class:`LatestOnly` keeps a single pending request, which
each new one replaces, runs the engine call for it off the main thread, and hands the result to
the main thread through a Qt signal (queued across threads).  A minimum interval caps the rate
so the map canvas keeps its share of the CPU.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

from qgis.PyQt.QtCore import QObject, pyqtSignal

_NOTHING = object()


class LatestOnly(QObject):
    """Run ``fn(request)`` for the most recent request only; ``done(request, result)`` on the
    main thread (``result`` None when ``fn`` raised or returned None)."""

    done = pyqtSignal(object, object)

    def __init__(self, fn: Callable[[Any], Any], min_interval: float = 0.04) -> None:
        super().__init__()
        self._fn, self._interval = fn, min_interval
        self._pending: Any = _NOTHING
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: Optional[threading.Thread] = None

    def submit(self, request: Any) -> None:
        """Replace the pending request (a request already running finishes first)."""
        with self._cond:
            if self._stopped:
                return
            self._pending = request
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rs-seg-hover",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def clear(self) -> None:
        """Drop the pending request (the cursor left, the mode changed)."""
        with self._cond:
            self._pending = _NOTHING

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread (after the request it runs, if any)."""
        with self._cond:
            self._stopped, self._pending = True, _NOTHING
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is _NOTHING and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                request, self._pending = self._pending, _NOTHING
            started = time.monotonic()
            try:
                result = self._fn(request)
            except Exception:  # a hover over a bad spot shows nothing; a click explains
                result = None
            self.done.emit(request, result)
            time.sleep(max(0.0, self._interval - (time.monotonic() - started)))
