"""Smooth natural shapes (trees, water, fields) with the topology shared by neighbours.

Each polygon of a class raster (pixel coordinates) is cut into *arcs*: runs of its boundary
between *nodes*, the pixel corners where three or more regions meet (or two regions of one
class touch diagonally).  Every arc separates exactly two regions, and both of them find the
same arc with the same end nodes, because nodes depend only on the 2×2 pixels around a corner.
An arc is smoothed when one of its two sides is a ``natural`` class and neither is a
``building``; the smoothing is a function of the arc alone, computed in a canonical direction
(from its lexicographically smaller end; a closed arc from its smallest vertex), so both
neighbours draw the identical curve: no gaps, no overlaps, without keeping the neighbours in
memory.  Smoothing = Douglas-Peucker at the tolerance (end nodes fixed; an arc keeps at least
its farthest point, so small regions do not vanish), then two rounds of Chaikin corner cutting
(each cut at most one tolerance from the corner).  An arc that is not smoothed keeps its pixel
corners only (the ring is walked one pixel edge at a time, but not kept that way).

Labels around a polygon are read from the raster in ``block``×``block`` tiles (a few cached), so
memory stays that of a few blocks however large the polygon's extent.  Masked pixels count as
one "nodata" region (label -1, smoothed against like an as-is class); outside the raster is the
frame (label -2), along which nothing is smoothed, so the coverage keeps the raster's edges.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np
from rasterio.windows import Window
from shapely.geometry import LineString, Polygon
from shapely.validation import make_valid

NODATA = -1
FRAME = -2  # outside the raster: arcs along the frame stay straight and its corners stay
CHAIKIN_ROUNDS = 2
TILE_CACHE = 6


def _unit_steps(ring: np.ndarray) -> np.ndarray:
    """A closed integer ring (without the repeated end point) with a vertex at every pixel
    corner along it."""
    ring = ring.astype(np.int32)  # labels and pixel positions: int32 halves the long rings
    step = np.roll(ring, -1, axis=0) - ring
    n = np.abs(step).max(axis=1)
    which = np.repeat(np.arange(len(ring)), n)
    t = (np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)).astype(np.int32)
    return ring[which] + np.sign(step)[which] * t[:, None]


def _chaikin(pts: np.ndarray, closed: bool, cut: float) -> np.ndarray:
    """Chaikin corner cutting, each cut at a quarter of the segment but at most ``cut`` from
    the corner (long straight sides keep their corners almost where they were)."""
    for _ in range(CHAIKIN_ROUNDS):
        if len(pts) < 3:
            return pts
        a = pts if closed else pts[:-1]
        b = np.roll(pts, -1, axis=0) if closed else pts[1:]
        length = np.hypot(*(b - a).T)[:, None]
        f = np.minimum(0.25, cut / np.maximum(length, 1e-12))
        q, r = a + f * (b - a), b - f * (b - a)
        inner = np.stack([q, r], axis=1).reshape(-1, 2)
        pts = inner if closed else np.concatenate([pts[:1], inner[1:-1], pts[-1:]])
    return pts


def smooth_arc(pts: np.ndarray, tol: float, closed: bool) -> np.ndarray:
    """The smoothed arc; an open arc keeps its end points and its direction, a closed one
    starts at its smallest vertex."""
    flip = not closed and _reversed(pts)
    work = _canonical_ring(pts) if closed else (pts[::-1] if flip else pts)
    if closed:
        simple = np.asarray(LineString(np.vstack([work, work[:1]])).simplify(
            tol, preserve_topology=False).coords)[:-1]
        if len(simple) < 3:
            simple = work
    else:
        simple = np.asarray(LineString(work).simplify(tol, preserve_topology=False).coords)
        if len(simple) == 2 and len(work) > 2:
            simple = np.array([work[0], work[_farthest(work)], work[-1]])
    out = _chaikin(simple.astype(np.float64), closed, tol)
    return out[::-1] if flip else out


def _farthest(pts: np.ndarray) -> int:
    """Index of the inner point farthest from the chord: an arc keeps it, so a region between
    two arcs joining the same nodes keeps an area."""
    a, b = pts[0], pts[-1]
    d = b - a
    if not d.any():
        dist = np.hypot(*(pts - a).T)
    else:
        dist = np.abs(d[0] * (pts[:, 1] - a[1]) - d[1] * (pts[:, 0] - a[0]))
    return int(np.argmax(dist[1:-1])) + 1


def _reversed(pts: np.ndarray) -> bool:
    """Whether an open arc runs against its canonical direction."""
    first, last = tuple(pts[0]), tuple(pts[-1])
    if first != last:
        return first > last
    return tuple(pts[1]) > tuple(pts[-2])


def _canonical_ring(pts: np.ndarray) -> np.ndarray:
    """A closed arc from its smallest vertex, towards the smaller of its two neighbours."""
    start = min(range(len(pts)), key=lambda i: tuple(pts[i]))
    pts = np.roll(pts, -start, axis=0)
    if len(pts) > 2 and tuple(pts[1]) > tuple(pts[-1]):
        pts = np.concatenate([pts[:1], pts[1:][::-1]])
    return pts


class LabelSampler:
    """Class labels at pixel positions, read in cached ``block`` tiles."""

    def __init__(self, ds: Any, block: int) -> None:
        self.ds, self.block = ds, block
        self.tiles: "OrderedDict[Tuple[int, int], np.ndarray]" = OrderedDict()

    def _tile(self, ty: int, tx: int) -> np.ndarray:
        key = (ty, tx)
        if key in self.tiles:
            self.tiles.move_to_end(key)
            return self.tiles[key]
        b = self.block
        win = Window(tx * b, ty * b, min(b, self.ds.width - tx * b),
                     min(b, self.ds.height - ty * b))
        data = self.ds.read(1, window=win).astype(np.int32)
        data[self.ds.read_masks(1, window=win) == 0] = NODATA
        self.tiles[key] = data
        if len(self.tiles) > TILE_CACHE:
            self.tiles.popitem(last=False)
        return data

    def __call__(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        out = np.full(rows.shape, FRAME, np.int32)
        inside = (rows >= 0) & (cols >= 0) & (rows < self.ds.height) & (cols < self.ds.width)
        b = self.block
        across = -(-self.ds.width // b)  # tiles in a row
        tile = np.where(inside, rows // b * across + cols // b, -1)
        for key in np.unique(tile[inside]).tolist():
            sel = tile == key
            ty, tx = divmod(key, across)
            out[sel] = self._tile(ty, tx)[rows[sel] - ty * b, cols[sel] - tx * b]
        return out


class CoverageSmoother:
    """Smooths the arcs of polygons of one class raster; see the module docstring.

    ``shapes`` maps class values to ``building`` / ``natural`` / ``as-is``; ``tol`` is in
    pixels."""

    def __init__(self, sampler: LabelSampler, shapes: Mapping[int, str], tol: float) -> None:
        self.sample, self.tol = sampler, tol
        self.natural = {v for v, s in shapes.items() if s == "natural"}
        self.building = {v for v, s in shapes.items() if s == "building"}

    def _smooth_between(self, a: int, b: int) -> bool:
        return (a in self.natural or b in self.natural) and \
            a not in self.building and b not in self.building and FRAME not in (a, b)

    def _smoothed(self, arc: np.ndarray, sides: Tuple[int, int], closed: bool) -> np.ndarray:
        """The arc smoothed at the tolerance, else at half of it, as long as the curve stays on
        the pixels of its two sides (near a node a chord can cut into a third region, and its
        outline is not smoothed with it); else its pixel corners."""
        for tol in (self.tol, self.tol / 2):
            curve = smooth_arc(arc, tol, closed)
            if self._on(curve, sides, closed):
                return curve
        return _corners(arc, closed)

    def _on(self, curve: np.ndarray, sides: Tuple[int, int], closed: bool) -> bool:
        """Whether every point of the curve (sampled every half pixel) lies on or at the edge of
        a pixel of one of the two ``sides``."""
        a = curve
        b = np.roll(curve, -1, axis=0) if closed else curve[1:]
        a = a if closed else a[:-1]
        n = np.maximum(np.ceil(np.hypot(*(b - a).T) * 2), 1).astype(int)
        seg = np.repeat(np.arange(len(a)), n)
        t = (np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n) + 0.5) / n[seg]
        p = a[seg] + (b - a)[seg] * t[:, None]
        # a point on a pixel edge or corner touches the pixels on each side of it
        xs = (np.ceil(p[:, 0]) - 1, np.floor(p[:, 0]))
        ys = (np.ceil(p[:, 1]) - 1, np.floor(p[:, 1]))
        ok = np.zeros(len(p), bool)
        for x in xs:
            for y in ys:
                ok |= np.isin(self.sample(y.astype(np.int64), x.astype(np.int64)), sides)
        return bool(ok.all())

    def ring(self, coords: Any, value: int) -> np.ndarray:
        """One ring of a region of class ``value`` with its shared arcs smoothed."""
        pts = _unit_steps(np.asarray(coords, dtype=np.float64)[:-1, :2].round())
        x, y = pts[:, 0], pts[:, 1]
        # the 2x2 pixels around each corner: upper-left, upper-right, lower-left, lower-right
        ul, ur = self.sample(y - 1, x - 1), self.sample(y - 1, x)
        ll, lr = self.sample(y, x - 1), self.sample(y, x)
        quad = np.sort(np.stack([ul, ur, ll, lr], axis=1), axis=1)
        distinct = 1 + (np.diff(quad, axis=1) != 0).sum(axis=1)
        del quad
        checker = (ul == lr) & (ur == ll) & (ul != ur)
        node = (distinct >= 3) | checker
        # the other side of each edge (from vertex i to i+1)
        step = np.roll(pts, -1, axis=0) - pts
        right, left, down = step[:, 0] > 0, step[:, 0] < 0, step[:, 1] > 0
        side_a = np.select([right, left, down], [ur, ul, ll], ul)
        side_b = np.select([right, left, down], [lr, ll, lr], ur)
        across = np.where(side_a == value, side_b, side_a)
        if not node.any():
            if not self._smooth_between(value, int(across[0])):
                return _corners(pts, closed=True)
            return self._smoothed(pts, (value, int(across[0])), closed=True)
        start = int(np.argmax(node))
        pts, node, across = (np.roll(a, -start, axis=0) for a in (pts, node, across))
        cuts = list(np.flatnonzero(node)) + [len(pts)]
        closed_pts = np.vstack([pts, pts[:1]])
        parts: List[np.ndarray] = []
        for a, b in zip(cuts[:-1], cuts[1:]):
            arc = closed_pts[a:b + 1]
            if self._smooth_between(value, int(across[a])) and len(arc) > 2:
                parts.append(self._smoothed(arc, (value, int(across[a])), closed=False)[:-1])
            else:
                parts.append(_corners(arc, closed=False)[:-1])
        return np.concatenate(parts)

    def polygon(self, poly: Polygon, value: int) -> List[Polygon]:
        """The region's polygon with its natural arcs smoothed (valid; usually one part).  A
        small region whose arcs all straighten between the same nodes vanishes (its
        neighbours' arcs straighten alike, so no gap opens)."""
        shell = self.ring(poly.exterior.coords, value)
        if not _has_area(shell):
            return []
        holes = [h for h in (self.ring(r.coords, value) for r in poly.interiors) if _has_area(h)]
        out = Polygon(shell, holes)
        if out.is_valid:
            return [out]
        fixed = make_valid(out)
        return [g for g in getattr(fixed, "geoms", [fixed]) if isinstance(g, Polygon)]


def _corners(pts: np.ndarray, closed: bool) -> np.ndarray:
    """A pixel path (one vertex per pixel edge) reduced to its corners (and, open, its ends):
    the same line, without the vertices in the middle of straight runs."""
    step = np.diff(np.vstack([pts[-1:], pts, pts[:1]]) if closed else pts, axis=0)
    turn = (step[1:] != step[:-1]).any(axis=1)
    keep = turn if closed else np.concatenate([[True], turn, [True]])
    return pts[keep].astype(np.float64)


def _has_area(ring: np.ndarray) -> bool:
    return len(ring) >= 3 and Polygon(ring).area > 0


def smooth_classes(shapes: Dict[int, str]) -> bool:
    """Whether any class is smoothed (then every non-building polygon goes through the
    smoother, so that its borders with natural neighbours follow theirs)."""
    return any(s == "natural" for s in shapes.values())
