"""Window grid, blending weights and the streaming stitcher.

Windows of edge ``tile`` step by ``stride = tile - overlap``; the last window of a row/column is
shifted back so it ends at the raster edge (a raster smaller than one tile gets one padded window).
Each window's scores are multiplied by a separable flat-top weight (1 in the middle, a cosine ramp
over ``overlap`` pixels at each side, never exactly 0) and accumulated into a strip ``tile`` rows
high; dividing by the summed weights gives a seamless blend.  Because the grid is a full product
of row and column positions, the summed weight is the outer product of two 1-D sums, so no 2-D
weight accumulator is needed.  When a row of windows is complete the rows above the next window
row are final: they are emitted and the strip rolls up.  Memory is O(channels × tile × width).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, Tuple

import numpy as np
import torch

from .jobs import InputError

_MOVE_ROWS = 16  # rows moved per chunk when the strip rolls up (bounds the temporary copy)
COLUMN_CHUNK = 2048  # columns processed at once when finishing rows (bounds temporaries)


def window_starts(length: int, tile: int, stride: int) -> List[int]:
    """Start offsets of the windows along one axis of ``length`` pixels."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def ramp_weights(tile: int, overlap: int) -> np.ndarray:
    """1-D flat-top window: cosine ramps over ``overlap`` pixels at both ends, 1 between."""
    w = np.ones(tile, dtype=np.float64)
    if overlap > 0:
        i = np.arange(overlap, dtype=np.float64)
        ramp = np.sin(0.5 * np.pi * (i + 0.5) / overlap) ** 2
        w[:overlap] = ramp
        w[tile - overlap:] = np.minimum(w[tile - overlap:], ramp[::-1])
    return w


def check_tiling(tile: int, overlap: int, multiple: int = 1) -> None:
    """Raise :class:`InputError` unless ``tile``/``overlap`` make a usable grid."""
    if tile <= 0 or overlap < 0:
        raise InputError(f"tile ({tile}) must be positive and overlap ({overlap}) not negative")
    if tile <= 2 * overlap:
        raise InputError(f"tile ({tile}) must be larger than twice the overlap ({overlap}); "
                         f"use a larger tile or an overlap below {tile // 2}")
    if tile % multiple:
        raise InputError(f"tile ({tile}) must be a multiple of {multiple} for this model; "
                         f"try {max(multiple, tile // multiple * multiple)}")


@dataclass(frozen=True)
class Grid:
    """The windows covering a ``width``×``height`` raster, in row-major order."""

    width: int
    height: int
    tile: int
    overlap: int

    @property
    def xs(self) -> List[int]:
        return window_starts(self.width, self.tile, self.tile - self.overlap)

    @property
    def ys(self) -> List[int]:
        return window_starts(self.height, self.tile, self.tile - self.overlap)

    def __len__(self) -> int:
        return len(self.xs) * len(self.ys)

    def windows(self) -> Iterator[Tuple[int, int, int]]:
        """Yield ``(row_index, x, y)`` for every window, row by row, left to right."""
        xs = self.xs
        for r, y in enumerate(self.ys):
            for x in xs:
                yield r, x, y

    def axis_weight_sum(self, axis: str) -> np.ndarray:
        """Summed 1-D weights along ``axis`` ('x' or 'y'), length max(size, tile)."""
        size, starts = (self.width, self.xs) if axis == "x" else (self.height, self.ys)
        w = ramp_weights(self.tile, self.overlap)
        total = np.zeros(max(size, self.tile), dtype=np.float64)
        for s in starts:
            total[s:s + self.tile] += w
        return total


@dataclass
class Strip:
    """Finished rows: blended scores ``C×h×width`` and validity ``h×width`` starting at ``y``."""

    y: int
    scores: torch.Tensor
    valid: torch.Tensor


class Stitcher:
    """Accumulates weighted window scores in a rolling strip and emits finished rows."""

    def __init__(self, grid: Grid, channels: int, device: torch.device | str = "cpu") -> None:
        self.grid = grid
        self.device = torch.device(device)
        t = grid.tile
        width = max(grid.width, t)
        w1 = torch.as_tensor(ramp_weights(t, grid.overlap), dtype=torch.float32)
        self._w2d = (w1[:, None] * w1[None, :]).to(self.device)
        self._wx = torch.as_tensor(grid.axis_weight_sum("x"), dtype=torch.float32).to(self.device)
        self._wy = torch.as_tensor(grid.axis_weight_sum("y"), dtype=torch.float32).to(self.device)
        self._acc = torch.zeros((channels, t, width), dtype=torch.float32, device=self.device)
        self._valid = torch.zeros((t, width), dtype=torch.bool, device=self.device)
        self._ys = grid.ys
        self._row = 0
        self._pending_shift = 0

    def add(self, x: int, y: int, scores: torch.Tensor, valid: torch.Tensor) -> None:
        """Accumulate one window's scores (C×T×T) and validity (T×T) at pixel (x, y)."""
        self._shift()
        if y != self._ys[self._row]:
            raise ValueError(f"window at y={y} added while row y={self._ys[self._row]} is open")
        t = self.grid.tile
        self._acc[:, :, x:x + t].addcmul_(scores, self._w2d)
        self._valid[:, x:x + t] |= valid

    def finish_row(self) -> Strip:
        """Close the current window row and return its final rows.

        The returned tensors are views into the strip, valid until the next ``add`` or
        ``finish_row`` call (the caller writes them out first): no strip-sized copies are made.
        """
        self._shift()
        y0 = self._ys[self._row]
        last = self._row == len(self._ys) - 1
        y1 = self.grid.height if last else self._ys[self._row + 1]
        h, w = y1 - y0, self.grid.width
        scores = self._acc[:, :h, :w]
        for c0 in range(0, w, COLUMN_CHUNK):  # chunked: no strip-sized weight temporary
            c1 = min(w, c0 + COLUMN_CHUNK)
            scores[:, :, c0:c1].div_(self._wy[y0:y1, None] * self._wx[None, c0:c1])
        self._pending_shift = 0 if last else h
        self._row += 1
        return Strip(y0, scores, self._valid[:h, :w])

    def _shift(self) -> None:
        """Move the rows still open (shared with the next window row) to the top, zero the rest.

        Rows move forward in chunks of at most ``_MOVE_ROWS`` (each cloned), so the move is safe
        even when source and target overlap (a shifted-back last window row) and its temporary
        memory stays small.
        """
        h = self._pending_shift
        if not h:
            return
        keep = self.grid.tile - h
        step = min(h, _MOVE_ROWS)
        for start in range(0, keep, step):
            n = min(step, keep - start)
            self._acc[:, start:start + n] = self._acc[:, h + start:h + start + n].clone()
            self._valid[start:start + n] = self._valid[h + start:h + start + n].clone()
        self._acc[:, keep:].zero_()
        self._valid[keep:] = False
        self._pending_shift = 0
