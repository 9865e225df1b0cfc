"""Regularised building outlines: right angles, parallel sides, no notches, no overlaps.

One building (a polygon in pixel coordinates, tolerance in pixels):

1. Douglas-Peucker at the tolerance removes the pixel staircase.
2. The dominant orientation is the length-weighted mean edge direction modulo 90° (averaged as
   4θ so that 0°, 90°, 180° and 270° agree).
3. In the frame turned by that angle every edge within 25° of an axis becomes exactly horizontal
   or vertical (its line through the edge's midpoint); steeper edges keep their direction (a
   genuinely slanted wall stays slanted).
4. Consecutive parallel lines closer than the tolerance merge into one (length-weighted); farther
   apart they get a perpendicular step between them.
5. Edges shorter than the tolerance go: a step between parallel lines merges them (a notch or a
   bump disappears), a short corner cut between perpendicular lines makes a sharp corner.
6. The vertices are the intersections of consecutive lines; turned back.

Holes smaller than ``fill_holes`` (pixel²) are filled, larger ones are regularised the same way.
A building that does not survive (fewer than three lines, an invalid ring, more than 30 % area
change) keeps its simplified outline.

Neighbours: :class:`Buildings` keeps the regularised buildings near the block frontier; a new one
is snapped to each neighbour's vertices within the tolerance (their walls coincide, so adjacent
buildings share a wall) and then the neighbour is subtracted (never an overlap).  Buildings that
no future polygon can reach are dropped, so memory stays that of one band of blocks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from shapely import affinity
from shapely.geometry import LinearRing, MultiPolygon, Polygon
from shapely.ops import snap

from ..jobs import InputError

AXIS_SNAP_DEG = 25.0
PARALLEL_DEG = 10.0
MAX_AREA_CHANGE = 0.3
MIN_WIDTH_SHARE = 0.5  # tolerance must stay below half the typical building width
SLIVER_PX2 = 0.25  # parts smaller than a quarter pixel left by subtracting a neighbour go


@dataclass
class _Line:
    """The line ``normal · p = offset``; ``weight`` is the edge length it was fitted to."""

    normal: np.ndarray
    offset: float
    weight: float


def _unit(v: np.ndarray) -> np.ndarray:
    n = v / max(float(np.hypot(*v)), 1e-12)
    return n if n[0] > 1e-12 or (abs(n[0]) <= 1e-12 and n[1] > 0) else -n


def _chains(ring: LinearRing, tol: float) -> List[np.ndarray]:
    """The ring cut at its Douglas-Peucker vertices: one array of original vertices per
    simplified edge (first and last shared with the neighbouring chains)."""
    raw = np.asarray(ring.coords)[:-1, :2]
    kept = np.asarray(ring.simplify(tol, preserve_topology=False).coords)[:-1, :2]
    index = {tuple(p): i for i, p in enumerate(raw.tolist())}
    cuts = sorted(index[tuple(p)] for p in kept.tolist())
    if len(cuts) < 3:
        return []
    out = []
    for a, b in zip(cuts, cuts[1:] + [cuts[0] + len(raw)]):
        out.append(raw[np.arange(a, b + 1) % len(raw)])
    return out


def _chain_fit(chain: np.ndarray) -> Tuple[np.ndarray, np.ndarray, float]:
    """Length-weighted mean point, principal direction and length of a chain's segments."""
    d = np.diff(chain, axis=0)
    w = np.hypot(d[:, 0], d[:, 1])
    total = max(float(w.sum()), 1e-12)
    mids = (chain[:-1] + chain[1:]) / 2
    centre = (mids * w[:, None]).sum(axis=0) / total
    # second moment of the segments (each a uniform line): midpoint spread + own extent
    c = mids - centre
    cov = (c.T * w) @ c + (d.T * (w / 12)) @ d
    direction = np.linalg.eigh(cov)[1][:, -1]
    return centre, direction, total


def dominant_angle(chains: Sequence[np.ndarray]) -> float:
    """Dominant edge direction in degrees, in [-45, 45): chain directions averaged as 4θ,
    weighted by chain length."""
    s = c = 0.0
    for chain in chains:
        _, direction, length = _chain_fit(chain)
        phi = math.atan2(direction[1], direction[0])
        s += length * math.sin(4 * phi)
        c += length * math.cos(4 * phi)
    return math.degrees(math.atan2(s, c) / 4)


def _fit_lines(chains: Sequence[np.ndarray], tol: float) -> List[_Line]:
    """Lines of a ring's chains (axis-snapped, each through its chain's mean point), parallel
    neighbours merged or joined by a step."""
    lines: List[_Line] = []
    snap_sin = math.sin(math.radians(AXIS_SNAP_DEG))
    for chain in chains:
        centre, d, length = _chain_fit(chain)
        if abs(d[1]) <= snap_sin:
            normal = np.array([0.0, 1.0])
        elif abs(d[0]) <= snap_sin:
            normal = np.array([1.0, 0.0])
        else:
            normal = _unit(np.array([-d[1], d[0]]))
        line = _Line(normal, float(normal @ centre), length)
        if lines and _parallel(lines[-1], line):
            prev = lines[-1]
            if abs(prev.offset - line.offset) <= tol:
                lines[-1] = _merged(prev, line)
                continue
            lines.append(_step(prev, chain[0]))
        lines.append(line)
    if len(lines) > 1 and _parallel(lines[-1], lines[0]):
        if abs(lines[-1].offset - lines[0].offset) <= tol:
            lines[0] = _merged(lines.pop(), lines[0])
        else:
            lines.append(_step(lines[-1], chains[0][0]))
    return lines


def _parallel(a: _Line, b: _Line) -> bool:
    return abs(a.normal[0] * b.normal[1] - a.normal[1] * b.normal[0]) < \
        math.sin(math.radians(PARALLEL_DEG))


def _merged(a: _Line, b: _Line) -> _Line:
    w = a.weight + b.weight
    normal = _unit(a.normal * a.weight + b.normal * b.weight)
    return _Line(normal, (a.offset * a.weight + b.offset * b.weight) / w, w)


def _step(line: _Line, through: np.ndarray) -> _Line:
    """The perpendicular to ``line`` through a point: the wall between two offset parallels."""
    normal = _unit(np.array([-line.normal[1], line.normal[0]]))
    return _Line(normal, float(normal @ through), 0.0)


def _vertices(lines: Sequence[_Line]) -> np.ndarray:
    """Intersections of consecutive lines (vertex i joins line i-1 and line i)."""
    out = []
    for i, b in enumerate(lines):
        a = lines[i - 1]
        m = np.array([a.normal, b.normal])
        out.append(np.linalg.solve(m, np.array([a.offset, b.offset])))
    return np.array(out)


def _drop_short(lines: List[_Line], tol: float) -> List[_Line]:
    """Remove edges shorter than ``tol``, shortest first (see the module docstring)."""
    while len(lines) > 4:
        v = _vertices(lines)
        lengths = np.hypot(*(np.roll(v, -1, axis=0) - v).T)
        i = int(np.argmin(lengths))
        if lengths[i] >= tol:
            break
        prev, nxt = lines[i - 1], lines[(i + 1) % len(lines)]
        if _parallel(prev, nxt):
            merged = _merged(prev, nxt)
            keep = [j for j in range(len(lines)) if j not in (i, (i + 1) % len(lines))]
            lines = [merged if j == (i - 1) % len(lines) else lines[j] for j in keep]
        else:
            lines = lines[:i] + lines[i + 1:]
    return lines


def _regular_ring(ring: LinearRing, tol: float) -> Optional[np.ndarray]:
    chains = _chains(ring, tol)
    if not chains:
        return None
    lines = _drop_short(_fit_lines(chains, tol), tol)
    if len(lines) < 3 or any(_parallel(lines[i - 1], lines[i]) for i in range(len(lines))):
        return None
    return _vertices(lines)


def regularize_polygon(poly: Polygon, tol: float, fill_holes: float) -> Polygon:
    """A building outline regularised at tolerance ``tol`` (same units as ``poly``); holes
    smaller than ``fill_holes`` (square units) filled.  See the module docstring."""
    origin = poly.centroid
    angle = dominant_angle(_chains(poly.exterior, tol))
    turned = affinity.rotate(poly, -angle, origin=origin)
    shell = _regular_ring(turned.exterior, tol)
    fallback = poly.simplify(tol, preserve_topology=True)
    if shell is None:
        return fallback
    holes = []
    for hole in turned.interiors:
        if Polygon(hole).area < fill_holes:
            continue
        regular = _regular_ring(hole, tol)
        holes.append(regular if regular is not None else np.asarray(hole.coords))
    out = Polygon(shell, holes)
    if not out.is_valid:
        out = Polygon(shell, [h for h in holes if Polygon(h).within(Polygon(shell))])
        if not out.is_valid:
            return fallback
    out = affinity.rotate(out, angle, origin=origin)
    if abs(out.area - poly.area) > MAX_AREA_CHANGE * poly.area:
        return fallback
    return out


def check_tolerance(tol_m: float, pixel_m: float) -> None:
    """A tolerance below the pixel size cannot be told from the pixel staircase."""
    if tol_m < pixel_m:
        raise InputError(f"regularisation tolerance {tol_m:g} m is below the pixel size "
                         f"({pixel_m:g} m); use at least {pixel_m:g} m (typically 2 pixels, "
                         f"{2 * pixel_m:g} m) and less than half the width of the buildings")


def _width(poly: Polygon) -> float:
    """Shorter side of the minimum rotated rectangle."""
    rect = np.asarray(poly.minimum_rotated_rectangle.exterior.coords)
    if len(rect) < 4:
        return 0.0
    sides = np.hypot(*np.diff(rect[:3], axis=0).T)
    return float(sides.min())


class Buildings:
    """Regularises building polygons (pixel coordinates) and keeps them apart; see the module
    docstring.  ``tol`` and ``fill_holes`` are in pixels and pixel²; ``pixel_m`` only words the
    tolerance check (``check``: a tolerance the user chose), which runs once ``CHECK_AFTER``
    buildings were seen (or at the end)."""

    CHECK_AFTER = 25
    CELL = 256

    def __init__(self, tol: float, fill_holes: float, pixel_m: float,
                 check: bool = True) -> None:
        self.tol, self.fill_holes, self.pixel_m = tol, fill_holes, pixel_m
        self.cells: Dict[Tuple[int, int], List[int]] = {}
        self.kept: Dict[int, Polygon] = {}
        self._next = 0
        self._sizes: List[Tuple[float, float]] = []  # (width, area) of the first buildings
        self._checked = not check

    def add(self, poly: Polygon) -> Iterator[Polygon]:
        """The regularised parts of one building, clear of the buildings added before."""
        if not self._checked:
            self._sizes.append((_width(poly), poly.area))
            if len(self._sizes) >= self.CHECK_AFTER:
                self.check_size()
        out = regularize_polygon(poly, self.tol, self.fill_holes)
        minx, miny, maxx, maxy = out.buffer(self.tol).bounds
        near = {k for key in self._cells_of(minx, miny, maxx, maxy)
                for k in self.cells.get(key, [])}
        for k in sorted(near):
            other = self.kept[k]
            if out.distance(other) < self.tol:
                out = self._beside(out, other)
        parts = [p for p in (out.geoms if isinstance(out, MultiPolygon) else [out])
                 if isinstance(p, Polygon) and p.area > SLIVER_PX2]
        for part in parts:
            self._store(part)
            yield part

    def _beside(self, poly: Any, other: Polygon) -> Any:
        """``poly`` snapped to its neighbour, clear of it, and the gap narrower than the
        tolerance between them filled up to the neighbour's wall (a shared wall)."""
        poly = snap(poly, other, self.tol).difference(other)
        r = self.tol / 2
        closed = poly.union(other).buffer(r, join_style=2).buffer(-r, join_style=2)
        gap = closed.difference(poly).difference(other).intersection(
            poly.buffer(self.tol, join_style=2)).intersection(other.buffer(self.tol, join_style=2))
        return poly.union(gap).difference(other) if not gap.is_empty else poly

    def _cells_of(self, minx: float, miny: float, maxx: float,
                  maxy: float) -> Iterator[Tuple[int, int]]:
        c = self.CELL
        for cy in range(int(miny // c), int(maxy // c) + 1):
            for cx in range(int(minx // c), int(maxx // c) + 1):
                yield cx, cy

    def _store(self, poly: Polygon) -> None:
        k = self._next
        self._next += 1
        self.kept[k] = poly
        for key in self._cells_of(*poly.bounds):
            self.cells.setdefault(key, []).append(k)

    def forget_above(self, y: float) -> None:
        """Drop buildings that end more than two tolerances above ``y`` (no polygon still to
        come reaches them)."""
        gone = {k for k, p in self.kept.items() if p.bounds[3] + 2 * self.tol < y}
        if not gone:
            return
        for k in gone:
            del self.kept[k]
        for key in list(self.cells):
            left = [k for k in self.cells[key] if k not in gone]
            if left:
                self.cells[key] = left
            else:
                del self.cells[key]

    def finish(self) -> None:
        """Run the size check if fewer than ``CHECK_AFTER`` buildings came."""
        if not self._checked:
            self.check_size()

    def check_size(self) -> None:
        """Raise when the tolerance is not below half the typical building width (the
        area-weighted median, so that specks of noise do not count)."""
        self._checked = True
        if not self._sizes:
            return
        sizes = sorted(self._sizes)
        areas = np.cumsum([a for _, a in sizes])
        width = sizes[int(np.searchsorted(areas, areas[-1] / 2))][0]
        if self.tol > MIN_WIDTH_SHARE * width:
            tol_m, width_m = self.tol * self.pixel_m, width * self.pixel_m
            raise InputError(f"regularisation tolerance {tol_m:g} m is above half the size of "
                             f"the buildings (typical width {width_m:.3g} m); use between "
                             f"{self.pixel_m:g} m (the pixel size) and "
                             f"{MIN_WIDTH_SHARE * width_m:.3g} m")
