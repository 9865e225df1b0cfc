"""Fitted outlines: a building's own walls, each a least-squares line through its pixel staircase.

The outline (a polygon in pixel coordinates, tolerance in pixels) is cut into *chains* at its
Douglas-Peucker vertices and where it runs along the raster frame.  Each chain becomes the line
fitted to its segments (principal direction through their length-weighted mean point), so a
wall at any angle runs through the middle of its staircase instead of through its outer corners
as Douglas-Peucker's does; the vertices are the intersections of consecutive lines.  Walls keep
their own directions: nothing is forced into right angles (that is
:mod:`engine.analysis.regularize`, which falls back to this outline for buildings that are not
rectilinear).

:func:`departure` measures how far an outline strays from the pixel outline it was drawn from:
the area between them per unit of outline length, i.e. the mean distance in pixels.  A straight
wall at any angle drawn through the middle of its staircase departs by at most 0.18 px.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import numpy as np
from shapely.errors import ShapelyError
from shapely.geometry import LinearRing, Polygon, box

CORNER_DEG = 20.0  # lines meeting at a smaller angle join at the chain end, not where they cross


def unit(v: np.ndarray) -> np.ndarray:
    """``v`` normalised, with a canonical sign (first non-zero component positive)."""
    n = v / max(float(np.hypot(*v)), 1e-12)
    return n if n[0] > 1e-12 or (abs(n[0]) <= 1e-12 and n[1] > 0) else -n


def chains(ring: LinearRing, tol: float,
           frame: Optional[Tuple[float, float]] = None) -> Tuple[List[np.ndarray], List[bool]]:
    """The ring cut at its Douglas-Peucker vertices and where it runs along the raster frame
    (``frame`` = width, height): one array of original vertices per chain (ends shared with
    the neighbouring chains), and whether each chain lies on the frame."""
    raw = np.asarray(ring.coords)[:-1, :2]
    kept = np.asarray(ring.simplify(tol, preserve_topology=False).coords)[:-1, :2]
    index = {tuple(p): i for i, p in enumerate(raw.tolist())}
    cuts = {index[tuple(p)] for p in kept.tolist()}
    on = np.zeros(len(raw), bool)  # segment i (vertex i to i+1) on the frame
    if frame is not None:
        nxt = np.roll(raw, -1, axis=0)
        for axis, edge in ((0, 0.0), (0, frame[0]), (1, 0.0), (1, frame[1])):
            on |= (raw[:, axis] == edge) & (nxt[:, axis] == edge)
        cuts |= set(np.flatnonzero(on != np.roll(on, 1)).tolist())
    cuts = sorted(cuts)
    if len(cuts) < 3:
        return [], []
    out = [raw[np.arange(a, b + 1) % len(raw)]
           for a, b in zip(cuts, cuts[1:] + [cuts[0] + len(raw)])]
    return out, [bool(on[a]) for a in cuts]


def chain_fit(chain: np.ndarray) -> Tuple[np.ndarray, np.ndarray, float]:
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


def fitted_ring(ring: LinearRing, tol: float,
                frame: Optional[Tuple[float, float]] = None) -> Optional[np.ndarray]:
    """The ring's vertices with each chain replaced by its fitted line (None: too few chains).
    Nearly parallel neighbours, and lines that cross more than two tolerances from their
    shared chain end, meet at that end (projected halfway between the two lines)."""
    parts, _ = chains(ring, tol, frame)
    if not parts:
        return None
    lines = []
    for chain in parts:
        centre, d, _ = chain_fit(chain)
        normal = unit(np.array([-d[1], d[0]]))
        lines.append((normal, float(normal @ centre)))
    corner = math.sin(math.radians(CORNER_DEG))
    out = []
    for i, (nb, ob) in enumerate(lines):
        na, oa = lines[i - 1]
        end = parts[i][0]
        if abs(na[0] * nb[1] - na[1] * nb[0]) >= corner:
            v = np.linalg.solve(np.array([na, nb]), np.array([oa, ob]))
            if np.hypot(*(v - end)) <= 2 * tol:
                out.append(v)
                continue
        out.append((end - (na @ end - oa) * na + end - (nb @ end - ob) * nb) / 2)
    return np.array(out)


def fitted_polygon(poly: Polygon, tol: float, fill_holes: float,
                   frame: Optional[Tuple[float, float]] = None) -> Polygon:
    """``poly`` drawn with fitted walls (see the module docstring); holes smaller than
    ``fill_holes`` filled; the Douglas-Peucker outline where the fitted one is not valid."""
    fallback = poly.simplify(tol, preserve_topology=True)
    shell = fitted_ring(poly.exterior, tol, frame)
    if shell is None or len(shell) < 3:
        return fallback
    holes = [fitted_ring(h, tol, frame) for h in poly.interiors
             if Polygon(h).area >= fill_holes]
    out = Polygon(shell, [h for h in holes if h is not None and len(h) >= 3])
    if not out.is_valid:
        return fallback
    if frame is not None:
        out = out.intersection(box(0, 0, *frame))
    return out if isinstance(out, Polygon) and not out.is_empty else fallback


def departure(outline: Polygon, pixels: Polygon) -> float:
    """Mean distance (pixels) between an outline and the pixel outline it was drawn from: the
    area between them per unit of outline length (inf when they cannot be compared)."""
    try:
        valid = outline if outline.is_valid else outline.buffer(0)
        return float(valid.symmetric_difference(pixels).area / max(valid.length, 1e-12))
    except (ShapelyError, ValueError):
        return math.inf
