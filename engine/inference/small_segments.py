"""Deepness's small-segment removal: a median filter over the finished class map, streamed.

Deepness runs ``cv2.medianBlur`` with an odd kernel ``size // 2 * 2 + 1`` over its class map
(``seg_small_segment`` from the model's metadata, 9 by default in its UI; 0 or 1 switch it off),
which removes segments smaller than about half the kernel and smooths class boundaries.  Here
the same filter (edges replicated, as OpenCV does) runs on the class rows on their way to the
writer: rows are held back until ``size // 2`` rows below them are known, so memory stays a few
window rows.  Nodata pixels stay nodata and never replace a class.
"""
from __future__ import annotations

from typing import Callable, List, Optional

import numpy as np
from scipy import ndimage

from ..io.rasters import CLASS_NODATA

RowsFn = Callable[[int, List[np.ndarray]], None]


def kernel(size: Optional[int]) -> int:
    """Deepness's kernel edge for a ``seg_small_segment`` size (1: no filtering)."""
    return int(size or 0) // 2 * 2 + 1


class MedianRows:
    """An ``on_rows`` (see :func:`engine.inference.pipeline.run_sliding_window`) that median-
    filters the class rows (the first array) before handing every array on; call
    :meth:`finish` after the last row."""

    def __init__(self, size: int, on_rows: RowsFn) -> None:
        self.halo = kernel(size) // 2
        self._on_rows = on_rows
        self._above: Optional[np.ndarray] = None   # raw class rows just above the pending ones
        self._pending: List[np.ndarray] = []        # per array: rows not yet handed on
        self._y = 0

    def __call__(self, y: int, rows: List[np.ndarray]) -> None:
        if not self._pending:
            self._pending, self._y = [r.copy() for r in rows], y
        else:
            self._pending = [np.concatenate([p, r], axis=-2) for p, r in zip(self._pending, rows)]
        ready = self._pending[0].shape[-2] - self.halo
        if ready > 0:
            self._emit(ready, last=False)

    def finish(self) -> None:
        """Hand on the rows still held back (the raster's bottom edge is replicated)."""
        if self._pending and self._pending[0].shape[-2]:
            self._emit(self._pending[0].shape[-2], last=True)

    def _emit(self, count: int, last: bool) -> None:
        classes = self._pending[0][0]
        above = self._above if self._above is not None else classes[:0]
        block = np.concatenate([above, classes], axis=0)
        filtered = ndimage.median_filter(block, size=2 * self.halo + 1, mode="nearest")
        top = above.shape[0]
        out = filtered[top:top + count]
        raw = classes[:count]
        out = np.where((raw == CLASS_NODATA) | (out == CLASS_NODATA), raw, out)
        rows = [out[None]] + [p[..., :count, :] for p in self._pending[1:]]
        self._on_rows(self._y, rows)
        self._above = np.concatenate([above, raw], axis=0)[-self.halo:] if self.halo else None
        self._pending = [p[..., count:, :] for p in self._pending]
        self._y += count
        if last:
            self._pending = []


def small_segment_filter(size: Optional[int], on_rows: RowsFn) -> Optional[MedianRows]:
    """A :class:`MedianRows` for a ``seg_small_segment`` size, or None when it filters nothing."""
    return MedianRows(int(size), on_rows) if kernel(size) > 1 else None
