"""Regularised building outlines: right angles, parallel sides, no notches, no overlaps.

One building (a polygon in pixel coordinates, tolerance in pixels):

1. The outline is cut into chains at its Douglas-Peucker vertices (tolerance) and where it runs
   along the raster frame (a building cut by the raster edge keeps that edge).
2. The dominant orientation is the length-weighted mean chain direction modulo 90° (averaged
   as 4θ so that 0°, 90°, 180° and 270° agree; chains on the frame do not vote).
3. In the frame turned by that angle every chain within 15° of an axis becomes exactly
   horizontal or vertical, through its length-weighted mean point (so the pixel staircase is
   averaged, not followed), provided that turning it moves it by at most half a pixel on
   average (a long wall a few degrees off the axes keeps its direction); steeper chains keep
   their direction (a slanted wall stays slanted).
4. Consecutive parallel lines closer than the tolerance merge into one (length-weighted); farther
   apart they get a perpendicular step between them.
5. Edges shorter than the tolerance go: a step between parallel lines merges them (a notch or a
   bump disappears), a short corner cut between perpendicular lines makes a sharp corner.
6. The vertices are the intersections of consecutive lines; turned back, clipped to the frame.

Holes smaller than ``fill_holes`` (pixel²) are filled, larger ones are regularised the same way.

Acceptance: the building is also drawn with its own walls, each a least-squares line through
its staircase (:mod:`engine.analysis.fitted`).  The rectilinear outline is kept unless it strays
from the building's pixel outline more than 0.1 px farther on average than that fitted one
(:func:`engine.analysis.fitted.departure`; about 0.02 IoU on a 20-pixel house).  So a building
that is not rectilinear (walls that do not meet at right angles, a ragged outline), or that does
not survive regularisation (fewer than three lines, an invalid ring, more than 30 % area
change), keeps its own walls: it is never forced into right angles.

Buildings smaller than a square of the tolerance are dropped (specks of a noisy prediction: they
have no outline at that tolerance and would only carve their larger neighbours).

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
from shapely.geometry import LinearRing, MultiPolygon, Polygon, box
from shapely.errors import ShapelyError
from shapely.ops import snap, transform, unary_union

from ..jobs import InputError
from .fitted import chain_fit, chains, departure, fitted_polygon, unit

AXIS_SNAP_DEG = 15.0
PARALLEL_DEG = 10.0
MAX_AREA_CHANGE = 0.3
SNAP_DEPARTURE_PX = 0.5  # a wall turns onto the building's axes if that moves it this little
# a rectilinear outline may stray this much farther (px, on average) from the pixels than the
# fitted one: about 0.02 IoU on a 20-pixel house
MAX_EXTRA_DEPARTURE_PX = 0.1
MIN_WIDTH_SHARE = 0.5  # tolerance must stay below half the typical building width
GRID = 256.0
SLIVER_PX2 = 0.25  # parts smaller than a quarter pixel left by subtracting a neighbour go


@dataclass
class _Line:
    """The line ``normal · p = offset``; ``weight`` is the edge length it was fitted to."""

    normal: np.ndarray
    offset: float
    weight: float


def _turn(points: np.ndarray, degrees: float, origin: np.ndarray) -> np.ndarray:
    t = math.radians(degrees)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return (points - origin) @ rot.T + origin


def dominant_angle(chains: Sequence[np.ndarray]) -> float:
    """Dominant edge direction in degrees, in [-45, 45): chain directions averaged as 4θ,
    weighted by chain length."""
    s = c = 0.0
    for chain in chains:
        _, direction, length = chain_fit(chain)
        phi = math.atan2(direction[1], direction[0])
        s += length * math.sin(4 * phi)
        c += length * math.cos(4 * phi)
    return math.degrees(math.atan2(s, c) / 4)


def _fit_lines(chains: Sequence[np.ndarray], fixed: Sequence[bool], tol: float) -> List[_Line]:
    """Lines of a ring's chains (axis-snapped, each through its chain's mean point; chains on
    the raster frame keep their exact line), parallel neighbours merged or joined by a step."""
    lines: List[_Line] = []
    snap_sin = math.sin(math.radians(AXIS_SNAP_DEG))
    for chain, exact in zip(chains, fixed):
        centre, d, length = chain_fit(chain)
        span = float(np.ptp(chain @ d))
        # turning a wall of this span by asin(s) about its middle moves it by span·s/4 on average
        if exact:
            normal = unit(np.array([-d[1], d[0]]))
        elif abs(d[1]) <= min(snap_sin, 4 * SNAP_DEPARTURE_PX / max(span, 1e-12)):
            normal = np.array([0.0, 1.0])
        elif abs(d[0]) <= min(snap_sin, 4 * SNAP_DEPARTURE_PX / max(span, 1e-12)):
            normal = np.array([1.0, 0.0])
        else:
            normal = unit(np.array([-d[1], d[0]]))
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
    normal = unit(a.normal * a.weight + b.normal * b.weight)
    return _Line(normal, (a.offset * a.weight + b.offset * b.weight) / w, w)


def _step(line: _Line, through: np.ndarray) -> _Line:
    """The perpendicular to ``line`` through a point: the wall between two offset parallels."""
    normal = unit(np.array([-line.normal[1], line.normal[0]]))
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


def _regular_ring(ring: LinearRing, tol: float, angle: float, origin: np.ndarray,
                  frame: Optional[Tuple[float, float]]) -> Optional[np.ndarray]:
    """One ring regularised in the frame turned by ``angle`` (returned unturned)."""
    parts, fixed = chains(ring, tol, frame)
    if not parts:
        return None
    lines = _drop_short(_fit_lines([_turn(c, -angle, origin) for c in parts], fixed, tol), tol)
    if len(lines) < 3 or any(_parallel(lines[i - 1], lines[i]) for i in range(len(lines))):
        return None
    return _turn(_vertices(lines), angle, origin)


def regularize_polygon(poly: Polygon, tol: float, fill_holes: float,
                       frame: Optional[Tuple[float, float]] = None) -> Polygon:
    """A building outline regularised at tolerance ``tol`` (same units as ``poly``); holes
    smaller than ``fill_holes`` (square units) filled.  ``frame`` (width, height) is the raster
    in pixel coordinates: sides along it stay there and the outline stays inside.  See the
    module docstring."""
    regular = _regularized(poly, tol, fill_holes, frame)
    fitted = fitted_polygon(poly, tol, fill_holes, frame)
    if regular is not None and \
            departure(regular, poly) <= departure(fitted, poly) + MAX_EXTRA_DEPARTURE_PX:
        return regular
    return fitted


def _regularized(poly: Polygon, tol: float, fill_holes: float,
                 frame: Optional[Tuple[float, float]]) -> Optional[Polygon]:
    """The rectilinear outline (None where it cannot be drawn)."""
    origin = np.asarray(poly.centroid.coords[0])
    parts, fixed = chains(poly.exterior, tol, frame)
    free = [c for c, f in zip(parts, fixed) if not f]
    angle = dominant_angle(free) if free else 0.0
    shell = _regular_ring(poly.exterior, tol, angle, origin, frame)
    if shell is None:
        return None
    holes = []
    for hole in poly.interiors:
        if Polygon(hole).area < fill_holes:
            continue
        regular = _regular_ring(hole, tol, angle, origin, frame)
        holes.append(regular if regular is not None else np.asarray(hole.coords))
    out = Polygon(shell, holes)
    if not out.is_valid:
        out = Polygon(shell, [h for h in holes if Polygon(h).within(Polygon(shell))])
        if not out.is_valid:
            return None
    if frame is not None:
        out = _polygonal(out.intersection(box(0, 0, *frame)))
    if abs(out.area - poly.area) > MAX_AREA_CHANGE * poly.area or \
            not isinstance(out, Polygon):
        return None
    return out


def _on_grid(geom: Any) -> Any:
    """Vertices rounded to 1/256 pixel: overlay operations between neighbours stay robust."""
    rounded = transform(lambda x, y: (np.round(np.asarray(x) * GRID) / GRID,
                                      np.round(np.asarray(y) * GRID) / GRID), geom)
    # buffer(0), not make_valid: GEOS's make_valid can hang on snapped, near-degenerate rings
    return rounded if rounded.is_valid else _polygonal(rounded.buffer(0))


def _polygonal(geom: Any) -> Any:
    """The polygons of a geometry (collections from snapping or unions hold lines too)."""
    if isinstance(geom, (Polygon, MultiPolygon)):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if isinstance(g, (Polygon, MultiPolygon))]
    return unary_union(parts) if parts else Polygon()


def check_tolerance(tol_m: float, pixel_m: float, option: str = "--tolerance") -> None:
    """A tolerance below the pixel size cannot be told from the pixel staircase; ``option`` is
    what the user set it with."""
    if tol_m < pixel_m:
        raise InputError(f"{option} {tol_m:g} m is below the pixel size "
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
    tolerance check (``check``: a tolerance the user chose, set with ``option``), which runs at
    the end over every building; ``frame`` is the raster's (width, height)."""

    CELL = 256

    def __init__(self, tol: float, fill_holes: float, pixel_m: float, check: bool = True,
                 frame: Optional[Tuple[float, float]] = None,
                 option: str = "--tolerance") -> None:
        self.tol, self.fill_holes, self.pixel_m, self.frame = tol, fill_holes, pixel_m, frame
        self.option = option
        self.cells: Dict[Tuple[int, int], List[int]] = {}
        self.kept: Dict[int, Polygon] = {}
        self._next = 0
        self._sizes: List[Tuple[float, float]] = []  # (width, area) of each building
        self.dropped = 0  # buildings smaller than a tolerance square
        self._checked = not check

    def add(self, poly: Polygon) -> Iterator[Polygon]:
        """The regularised parts of one building, clear of the buildings added before."""
        if not self._checked:
            self._sizes.append((_width(poly), poly.area))
        if poly.area < self.tol * self.tol:  # below the tolerance there is no outline to draw
            self.dropped += 1
            return
        out = _on_grid(regularize_polygon(poly, self.tol, self.fill_holes, self.frame))
        # snapping moves vertices up to a tolerance, the filled gap reaches one more
        near = self.near(out.buffer(3 * self.tol).bounds)
        close = [p for p in near if out.distance(p) < self.tol]
        if close:
            try:
                out = self._beside(out, unary_union(close))  # one overlay against all
                out = _polygonal(out).difference(unary_union(near))
            except (ShapelyError, ValueError):  # GEOS gave up on near-coincident edges
                out = poly.difference(unary_union(near))  # the pixel outline, clear of them
        parts = [p for p in (out.geoms if isinstance(out, MultiPolygon) else [out])
                 if isinstance(p, Polygon) and p.area > SLIVER_PX2]
        for part in parts:
            self._store(part)
            yield part

    def _beside(self, poly: Any, other: Any) -> Any:
        """``poly`` snapped to its neighbours (``other``, a union), clear of them, and the gaps
        narrower than the tolerance between them filled up to their walls (shared walls)."""
        snapped = _on_grid(snap(poly, other, self.tol))
        poly = _polygonal(snapped).difference(other)
        r = self.tol / 2
        closed = poly.union(other).buffer(r, join_style=2).buffer(-r, join_style=2)
        gap = closed.difference(poly).difference(other).intersection(
            poly.buffer(self.tol, join_style=2)).intersection(other.buffer(self.tol, join_style=2))
        touching = [g for g in getattr(gap, "geoms", [gap])
                    if isinstance(g, Polygon) and g.intersects(poly)]
        if not touching:
            return poly
        return _polygonal(poly.union(unary_union(touching))).difference(other)

    def near(self, bounds: Tuple[float, float, float, float]) -> List[Polygon]:
        """The kept buildings in the grid cells that ``bounds`` (minx, miny, maxx, maxy)
        touches, in the order they were added."""
        return [self.kept[k] for k in sorted({k for key in self._cells_of(*bounds)
                                              for k in self.cells.get(key, [])})]

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
        """Run the size check (once every building was seen)."""
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
            usable = (f"use between {self.pixel_m:g} m (the pixel size) and "
                      f"{MIN_WIDTH_SHARE * width_m:.3g} m" if MIN_WIDTH_SHARE * width >= 1 else
                      "they are too small to regularise at this pixel size; leave them as-is")
            raise InputError(f"{self.option} {tol_m:g} m is above half the size of "
                             f"the buildings (typical width {width_m:.3g} m); {usable}")
