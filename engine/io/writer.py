"""A writer thread that receives finished row strips and writes them block-aligned.

Strips arrive in order but with arbitrary heights (the window stride); writing them as they come
would split compressed GeoTIFF blocks across writes.  The writer buffers rows and writes whole
block rows, so every block is compressed exactly once.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Dict, List, Optional

import numpy as np
import rasterio
from rasterio.windows import Window

_STOP = object()


class StripWriter:
    """Writes ``(y, array C×h×W)`` strips to one open GeoTIFF in a background thread."""

    def __init__(self, path, profile: Dict[str, Any], block_rows: int = 256,
                 colormap: Optional[dict] = None, tags: Optional[Dict[str, str]] = None,
                 descriptions: Optional[List[str]] = None, scales: Optional[List[float]] = None,
                 max_pending: int = 2) -> None:
        self._dst = rasterio.open(path, "w", **profile)
        if colormap:
            self._dst.write_colormap(1, colormap)
        if tags:
            self._dst.update_tags(1, **tags)
        if descriptions:
            for i, d in enumerate(descriptions, start=1):
                self._dst.set_band_description(i, d)
        if scales:
            self._dst.scales = tuple(scales)
        self._block_rows = block_rows
        self._pending: List[np.ndarray] = []
        self._pending_y = 0
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=max_pending)
        self._error: Optional[BaseException] = None
        self._aborted = False
        self._thread = threading.Thread(target=self._run, name="rs-seg-writer", daemon=True)
        self._thread.start()

    def put(self, y: int, data: np.ndarray) -> None:
        """Queue rows ``y .. y+h`` (``data`` is C×h×W); raises if the writer failed."""
        self._raise_if_failed()
        self._queue.put((y, data))

    def close(self) -> None:
        """Flush remaining rows, close the file and re-raise any writer error."""
        self._queue.put(_STOP)
        self._thread.join()
        self._dst.close()
        self._raise_if_failed()

    def abort(self) -> None:
        """Stop without flushing (the caller discards the file)."""
        self._aborted = True
        self._drain()
        self._queue.put(_STOP)
        self._thread.join()
        self._dst.close()

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            if self._error is not None or self._aborted:
                continue
            try:
                self._accept(*item)
            except BaseException as exc:  # surfaced to the producer by put()/close()
                self._error = exc
        if self._error is None and not self._aborted:
            try:
                self._flush(final=True)
            except BaseException as exc:
                self._error = exc

    def _accept(self, y: int, data: np.ndarray) -> None:
        if not self._pending:
            self._pending_y = y
        self._pending.append(data)
        self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._pending:
            return
        rows = np.concatenate(self._pending, axis=1)
        n = rows.shape[1]
        end = self._pending_y + n
        keep_from = n if final or end >= self._dst.height else \
            (end // self._block_rows) * self._block_rows - self._pending_y
        if keep_from > 0:
            w = rows.shape[2]
            self._dst.write(rows[:, :keep_from], window=Window(0, self._pending_y, w, keep_from))
        rest = rows[:, max(keep_from, 0):]
        self._pending = [rest] if rest.shape[1] else []
        self._pending_y += max(keep_from, 0)
