"""Window grid, blending weights and the streaming stitcher.

Windows of edge ``tile`` are spread evenly along each axis, first at 0 and last ending at the
raster edge, with steps of at most ``stride = tile - overlap`` (a raster smaller than one tile gets
one padded window).  Evenly rather than shifting only the last window back: every step stays within
a pixel of the others, so neighbouring window rows share little more than ``overlap`` rows — and
those shared rows are what the stitcher has to keep.

Each window's scores are multiplied by a separable flat-top weight (1 in the middle, a cosine ramp
over ``overlap`` pixels at each side, never exactly 0); dividing the accumulated scores by the
summed weights gives a seamless blend.  Because the grid is a full product of row and column
positions, the summed weight is the outer product of two 1-D sums, so no 2-D weight accumulator is
needed.

The stitcher streams in both directions.  Within a window row, the columns left of a new window are
final when it arrives and leave as a :class:`Block`; the rows such a block shares with the next
window row go to a carry buffer and are added back when that row's windows come.  Memory: the carry
(channels × (tile − step) × width) plus two channels × tile × tile column buffers — about
overlap/tile of a full-width strip, and independent of the raster's height.

A network whose output is smaller than its input (valid convolutions: 512 → 484) predicts only
the centre of each window; its ``margin`` pixels per side are filled by the caller (edge
replication) and get a weight of :data:`MARGIN_WEIGHT` relative to the centre, so wherever a
neighbouring window's centre covers them that prediction wins; only along the raster edge, where
no centre reaches, the replicated values stand.

The stitcher works on torch tensors when given a torch device and on numpy arrays otherwise
(ONNX models without torch), through :mod:`engine.compute.backend`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterator, List, Mapping, Optional, Tuple

import numpy as np

from ..compute import backend as xp
from ..jobs import InputError

MARGIN_WEIGHT = 1e-6


def window_starts(length: int, tile: int, stride: int) -> List[int]:
    """Start offsets of the windows along one axis of ``length`` pixels (evenly spread)."""
    if length <= tile:
        return [0]
    span = length - tile
    steps = -(-span // stride)
    return [(i * span + steps // 2) // steps for i in range(steps + 1)]


def ramp_weights(tile: int, overlap: int, margin: int = 0) -> np.ndarray:
    """1-D flat-top window: cosine ramps over ``overlap`` pixels at both ends, 1 between.

    With a ``margin`` the ramps cover ``overlap - 2 * margin`` pixels inside the margins, which
    weigh :data:`MARGIN_WEIGHT`.
    """
    if margin:
        w = np.full(tile, MARGIN_WEIGHT, dtype=np.float64)
        w[margin:tile - margin] = ramp_weights(tile - 2 * margin, overlap - 2 * margin)
        return w
    w = np.ones(tile, dtype=np.float64)
    if overlap > 0:
        i = np.arange(overlap, dtype=np.float64)
        ramp = np.sin(0.5 * np.pi * (i + 0.5) / overlap) ** 2
        w[:overlap] = ramp
        w[tile - overlap:] = np.minimum(w[tile - overlap:], ramp[::-1])
    return w


def check_tiling(tile: int, overlap: int, multiple: int = 1, margin: int = 0) -> None:
    """Raise :class:`InputError` unless ``tile``/``overlap`` make a usable grid."""
    if tile <= 0 or overlap < 0:
        raise InputError(f"tile ({tile}) must be positive and overlap ({overlap}) not negative")
    if overlap < 2 * margin:
        raise InputError(f"overlap ({overlap}) must be at least twice the {margin} pixels the "
                         f"model leaves unpredicted at each window edge; use --overlap "
                         f"{2 * margin + 16} or more")
    if tile <= 2 * overlap:
        raise InputError(f"tile ({tile}) must be larger than twice the overlap ({overlap}); "
                         f"use a larger tile or an overlap below {tile // 2}")
    if tile % multiple:
        raise InputError(f"tile ({tile}) must be a multiple of {multiple} for this model; "
                         f"try {max(multiple, tile // multiple * multiple)}")


@dataclass(frozen=True)
class Grid:
    """The windows covering a ``width``×``height`` raster, in row-major order.

    ``margin``: pixels at each window edge the network does not predict (output smaller than
    input).
    """

    width: int
    height: int
    tile: int
    overlap: int
    margin: int = 0

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
        w = ramp_weights(self.tile, self.overlap, self.margin)
        total = np.zeros(max(size, self.tile), dtype=np.float64)
        for s in starts:
            total[s:s + self.tile] += w
        return total


@dataclass
class Block:
    """Finished pixels: blended scores ``C×h×w`` and validity ``h×w`` at raster pixel (x, y).

    Tensors or numpy arrays, as the stitcher's device dictates.
    """

    x: int
    y: int
    scores: Any
    valid: Any


class Stitcher:
    """Accumulates weighted window scores and emits finished blocks, row by row, left to right.

    Windows must be added in grid order (:meth:`Grid.windows`).  ``add`` returns the block of
    columns the new window leaves behind (none for a row's first window), ``finish_row`` the rest
    of the row.  A returned block is a view, valid until the next ``add`` or ``finish_row`` call
    (the caller converts it first): no block-sized copies are made.

    ``device``: with torch installed, buffers are tensors on that device; with None, or without
    torch (ONNX models), they are numpy arrays.
    """

    def __init__(self, grid: Grid, channels: int, device: Any = "cpu", first_row: int = 0) -> None:
        self.grid = grid
        torch = xp.torch_module()
        dev = torch.device(str(device)) if torch is not None and device is not None else None
        t = grid.tile
        self._xs, self._ys = grid.xs, grid.ys
        w1 = ramp_weights(t, grid.overlap, grid.margin)
        self._w2d = xp.asarray(w1[:, None] * w1[None, :], dev)
        self._wx = xp.asarray(grid.axis_weight_sum("x"), dev)
        self._wy = xp.asarray(grid.axis_weight_sum("y"), dev)
        # two column buffers: a block stays readable in one while the next window lands in the other
        self._acc = [xp.zeros((channels, t, t), dev) for _ in range(2)]
        self._acc_valid = [xp.zeros((t, t), dev, "bool") for _ in range(2)]
        shared = max([t - (b - a) for a, b in zip(self._ys, self._ys[1:])], default=0)
        self._carry = xp.zeros((channels, shared, grid.width), dev)
        self._carry_valid = xp.zeros((shared, grid.width), dev, "bool")
        self._cur = 0
        self._x0 = 0  # raster column of the current column buffer's first column
        self._row = first_row  # a shard of the grid starts at its first window row
        self._col = 0  # index of the next window within the row
        self._carried = 0  # carry rows that belong to the current window row

    @property
    def carry_rows(self) -> int:
        """Rows of the carry buffer: the most rows two neighbouring window rows share."""
        return self._carry.shape[1]

    def add(self, x: int, y: int, scores: Any, valid: Any) -> Optional[Block]:
        """Accumulate one window's scores (C×T×T) and validity (T×T) at pixel (x, y)."""
        if self._row >= len(self._ys) or self._col >= len(self._xs) \
                or (x, y) != (self._xs[self._col], self._ys[self._row]):
            raise ValueError(f"window at ({x}, {y}) added out of grid order")
        nxt = self._cur ^ 1
        acc, ok = self._acc[nxt], self._acc_valid[nxt]
        block = None
        if self._col == 0:
            acc[...] = 0
            ok[...] = False
        else:
            block = self._emit(x)
            t, d = self.grid.tile, x - self._x0
            acc[:, :, :t - d] = self._acc[self._cur][:, :, d:]
            acc[:, :, t - d:] = 0
            ok[:, :t - d] = self._acc_valid[self._cur][:, d:]
            ok[:, t - d:] = False
        self._cur, self._x0 = nxt, x
        acc += scores * self._w2d
        ok |= valid
        self._col += 1
        return block

    def finish_row(self) -> Block:
        """Close the current window row (all its windows added) and return its last block."""
        if self._col != len(self._xs):
            raise ValueError(f"row {self._row} has {self._col} of {len(self._xs)} windows")
        block = self._emit(self.grid.width)
        self._carried = self.grid.tile - block.scores.shape[1]
        self._row += 1
        self._col = 0
        return block

    def _emit(self, end: int) -> Block:
        """Finish columns ``x0 .. end`` of the current window row."""
        acc, ok = self._acc[self._cur], self._acc_valid[self._cur]
        x0, y0, t = self._x0, self._ys[self._row], self.grid.tile
        last = self._row == len(self._ys) - 1
        h = (self.grid.height if last else self._ys[self._row + 1]) - y0
        k, d = self._carried, end - x0
        acc[:, :k, :d] += self._carry[:, :k, x0:end]
        ok[:k, :d] |= self._carry_valid[:k, x0:end]
        if not last:
            # read before written: rows shared by three window rows pass the old carry on
            self._carry[:, :t - h, x0:end] = acc[:, h:, :d]
            self._carry_valid[:t - h, x0:end] = ok[h:, :d]
        scores = acc[:, :h, :d]
        scores /= self._wy[y0:y0 + h, None] * self._wx[None, x0:end]
        return Block(x0, y0, scores, ok[:h, :d])


def with_margin(grid: Grid, card: Mapping[str, Any], network_tile: int) -> Grid:
    """``grid`` with the margin an ONNX model leaves unpredicted at each window edge (scaled
    from network to input pixels when the view resamples)."""
    margin = int((card.get("onnx") or {}).get("margin", 0))
    if not margin:
        return grid
    return replace(grid, margin=-(-margin * grid.tile // network_tile))
