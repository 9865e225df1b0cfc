"""Block-wise polygonisation of a class raster with exact merging across block edges.

The raster is read in square ``block``×``block`` windows, so memory stays bounded however large
it is.  Each block is polygonised with ``rasterio.features.shapes`` (4-connectivity, pixels that
are nodata/masked are skipped) in *pixel* coordinates, where every vertex is an integer and
merging is exact.  A piece that reaches an internal block edge is "open": it joins a group
(union-find) with the pieces of the same class it shares an edge segment with in the left and
upper neighbour blocks.  Blocks are processed row by row, so once a group has no piece waiting
for its right or lower neighbour it is complete; its pieces are unioned
(``shapely.ops.unary_union``) and yielded.  The result equals whole-raster polygonisation: the
same polygons, the same areas.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
from affine import Affine
from rasterio.features import shapes
from rasterio.windows import Window
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.ops import unary_union

from ..jobs import InputError, Job
from .attributes import ProbabilityProbe, Stats, merge_stats

DEFAULT_BLOCK = 1024
Frontier = Callable[[Callable[[int], bool]], float]
_SHAPES_DTYPES = ("uint8", "uint16", "int16", "int32")


@dataclass(eq=False)
class _Piece:
    """A polygon of one block, in pixel coordinates."""

    geom: Polygon
    value: int
    group: int = -1
    stats: Optional[Stats] = None


def _edge_intervals(geojson: Dict[str, Any], axis: int, coord: float) -> List[Tuple[float, float]]:
    """Intervals of the rings' segments that lie on the line ``x == coord`` (axis 0) or
    ``y == coord`` (axis 1); returned as (lo, hi) along the other axis."""
    rings = geojson["coordinates"]
    out: List[Tuple[float, float]] = []
    other = 1 - axis
    for ring in rings:
        pts = np.asarray(ring, dtype=np.float64)
        on = pts[:, axis] == coord
        both = on[:-1] & on[1:]
        if not both.any():
            continue
        a = pts[:-1][both, other]
        b = pts[1:][both, other]
        out.extend(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist()))
    return out


def _ring_without_collinear(coords: Any) -> np.ndarray:
    pts = np.asarray(coords, dtype=np.float64)[:-1, :2]
    prev, nxt = np.roll(pts, 1, axis=0), np.roll(pts, -1, axis=0)
    cross = ((pts[:, 0] - prev[:, 0]) * (nxt[:, 1] - pts[:, 1])
             - (pts[:, 1] - prev[:, 1]) * (nxt[:, 0] - pts[:, 0]))
    keep = pts[cross != 0]
    return keep if len(keep) >= 3 else pts


def _drop_collinear(poly: Polygon) -> Polygon:
    """Remove the vertices a union leaves on former block edges (exact: pixel coordinates are
    integers), including a ring's start point."""
    return Polygon(_ring_without_collinear(poly.exterior.coords),
                   [_ring_without_collinear(r.coords) for r in poly.interiors])


class _BlockMerger:
    """Joins block pieces into whole polygons; ``emit(value, polygon, stats)`` gets each
    complete one (``stats``: its probability statistics, :mod:`engine.analysis.attributes`).

    Groups are keyed by id; a group's ``pending`` counts the (piece, edge) pairs still waiting
    for the neighbour block on the right or below.  Merging moves the smaller group's pieces into
    the larger one.
    """

    def __init__(self, width: int, height: int,
                 emit: Callable[[int, Polygon, Optional[Stats]], None]) -> None:
        self.width, self.height = width, height
        self.emit = emit
        self.groups: Dict[int, Dict[str, Any]] = {}
        self._next = 0
        # (row, col) of a block -> [(piece, intervals on its right / bottom edge)]
        self.right_open: Dict[Tuple[int, int], List[Tuple[_Piece, List[Tuple[float, float]]]]] = {}
        self.bottom_open: Dict[Tuple[int, int], List[Tuple[_Piece, List[Tuple[float, float]]]]] = {}

    # -- groups
    def _new_group(self, piece: _Piece, pending: int) -> None:
        gid = self._next
        self._next += 1
        self.groups[gid] = {"pieces": [piece], "pending": pending}
        piece.group = gid

    def _merge(self, a: int, b: int) -> int:
        if a == b:
            return a
        ga, gb = self.groups[a], self.groups[b]
        if len(ga["pieces"]) < len(gb["pieces"]):
            a, b, ga, gb = b, a, gb, ga
        for p in gb["pieces"]:
            p.group = a
        ga["pieces"].extend(gb["pieces"])
        ga["pending"] += gb["pending"]
        del self.groups[b]
        return a

    def _finish(self, gid: int) -> None:
        group = self.groups.pop(gid)
        pieces = group["pieces"]
        value = pieces[0].value
        stats = merge_stats([p.stats for p in pieces])
        if len(pieces) == 1:
            merged = pieces[0].geom
        else:
            merged = unary_union([p.geom for p in pieces])
        parts = merged.geoms if isinstance(merged, MultiPolygon) else [merged]
        for part in parts:
            if not part.is_empty:
                self.emit(value, _drop_collinear(part) if len(pieces) > 1 else part, stats)

    def open_top(self, of: Callable[[int], bool]) -> float:
        """The top pixel row of the still open groups of the class values ``of`` picks (inf:
        none)."""
        return min((p.geom.bounds[1] for g in self.groups.values() for p in g["pieces"]
                    if of(p.value)), default=float("inf"))

    # -- linking across one shared edge
    def _link(self, old: List[Tuple[_Piece, List[Tuple[float, float]]]],
              new: List[Tuple[_Piece, List[Tuple[float, float]]]], start: float,
              length: int) -> None:
        """Join pieces of the same class whose intervals on the shared edge overlap.

        Each edge pixel position is owned by at most one piece on each side, so the pairs are
        found with two index arrays over the edge."""
        if not old or not new:
            return
        own_old = np.full(length, -1, dtype=np.int64)
        own_new = np.full(length, -1, dtype=np.int64)
        for arr, items in ((own_old, old), (own_new, new)):
            for i, (_, intervals) in enumerate(items):
                for lo, hi in intervals:
                    arr[int(lo - start):int(hi - start)] = i
        both = (own_old >= 0) & (own_new >= 0)
        if not both.any():
            return
        pairs = np.unique(np.stack([own_old[both], own_new[both]], axis=1), axis=0)
        for i, j in pairs.tolist():
            p, q = old[i][0], new[j][0]
            if p.value == q.value:
                self._merge(p.group, q.group)

    def add_block(self, r: int, c: int, x0: int, y0: int, x1: int, y1: int,
                  polys: List[Tuple[Dict[str, Any], int]],
                  stats: Optional[List[Optional[Stats]]] = None) -> None:
        """Add the pieces of block (r, c) covering pixel columns x0..x1 and rows y0..y1
        (``stats[i]``: the probability statistics of ``polys[i]``)."""
        involved: List[_Piece] = []  # pieces whose group may have become complete
        left_new: List[Tuple[_Piece, List[Tuple[float, float]]]] = []
        top_new: List[Tuple[_Piece, List[Tuple[float, float]]]] = []
        right_new: List[Tuple[_Piece, List[Tuple[float, float]]]] = []
        bottom_new: List[Tuple[_Piece, List[Tuple[float, float]]]] = []
        for i, (geojson, value) in enumerate(polys):
            piece_stats = stats[i] if stats else None
            ring = np.asarray(geojson["coordinates"][0], dtype=np.float64)
            minx, miny = ring.min(axis=0)
            maxx, maxy = ring.max(axis=0)
            left = x0 > 0 and minx == x0
            top = y0 > 0 and miny == y0
            right = x1 < self.width and maxx == x1
            bottom = y1 < self.height and maxy == y1
            geom = shape(geojson)
            if not (left or top or right or bottom):
                self.emit(value, geom, piece_stats)
                continue
            piece = _Piece(geom, value, stats=piece_stats)
            self._new_group(piece, int(right) + int(bottom))
            involved.append(piece)
            for flag, axis, coord, bucket in ((left, 0, x0, left_new), (top, 1, y0, top_new),
                                              (right, 0, x1, right_new),
                                              (bottom, 1, y1, bottom_new)):
                if flag:
                    intervals = _edge_intervals(geojson, axis, coord)
                    if intervals:
                        bucket.append((piece, intervals))
                    elif bucket is right_new or bucket is bottom_new:
                        # touches the edge at a corner only: nothing can join there
                        self.groups[piece.group]["pending"] -= 1
        for key, store, new, start, length in (
                ((r, c - 1), self.right_open, left_new, y0, y1 - y0),
                ((r - 1, c), self.bottom_open, top_new, x0, x1 - x0)):
            old = store.pop(key, [])
            for p, _ in old:  # their neighbour block is here now: no longer pending
                self.groups[p.group]["pending"] -= 1
            self._link(old, new, start, length)
            involved.extend(p for p, _ in old)
        if right_new:
            self.right_open[(r, c)] = right_new
        if bottom_new:
            self.bottom_open[(r, c)] = bottom_new
        # read the groups after all merges: ids may have been merged away meanwhile
        for gid in sorted({p.group for p in involved}):
            if self.groups[gid]["pending"] == 0:
                self._finish(gid)

    def close(self) -> None:
        """Flush what is left (nothing, when every block was added)."""
        for gid in sorted(self.groups):
            self._finish(gid)


def _block_grid(width: int, height: int, block: int) -> List[Tuple[int, int, int, int, int, int]]:
    return [(r, c, x, y, min(x + block, width), min(y + block, height))
            for r, y in enumerate(range(0, height, block))
            for c, x in enumerate(range(0, width, block))]


def iter_polygons(ds: Any, block: int = DEFAULT_BLOCK, job: Optional[Job] = None,
                  probe: Optional[ProbabilityProbe] = None,
                  on_block: Optional[Callable[[Frontier], None]] = None,
                  ) -> Iterator[Tuple[int, Polygon, Optional[Stats]]]:
    """Yield ``(class value, polygon in pixel coordinates, probability statistics)`` for every
    4-connected region of band 1 of ``ds`` (masked/nodata pixels excluded), reading
    ``block``×``block`` windows.  Polygons spanning several blocks come out whole.  The
    statistics come from ``probe`` (None without).  After each block ``on_block(frontier)``
    learns where regions still to come may reach: ``frontier(of)`` is the top pixel row of
    those whose class value ``of(value)`` picks."""
    job = job or Job()
    ready: List[Tuple[int, Polygon, Optional[Stats]]] = []
    merger = _BlockMerger(ds.width, ds.height, lambda v, g, s: ready.append((v, g, s)))
    grid = _block_grid(ds.width, ds.height, block)
    dtype = ds.dtypes[0]
    for i, (r, c, x0, y0, x1, y1) in enumerate(grid):
        job.check()
        win = Window(x0, y0, x1 - x0, y1 - y0)
        data = ds.read(1, window=win)
        valid = ds.read_masks(1, window=win) > 0
        if dtype not in _SHAPES_DTYPES:
            if valid.any() and int(data[valid].max()) > np.iinfo(np.int32).max:
                raise InputError(f"class values above {np.iinfo(np.int32).max} cannot be "
                                 f"polygonised; recode the raster")
            data = data.astype(np.int32)
        polys = [(g, int(v)) for g, v in shapes(data, mask=valid, connectivity=4,
                                                transform=Affine.translation(x0, y0))]
        stats = probe.measure(win, data, valid, polys) if probe is not None else None
        merger.add_block(r, c, x0, y0, x1, y1, polys, stats)
        yield from ready
        ready.clear()
        if on_block is not None:
            on_block(lambda of, top=float(y0): min(top, merger.open_top(of)))
        job.report((i + 1) / len(grid) * 0.98, f"block {i + 1}/{len(grid)}")
    merger.close()
    yield from ready
