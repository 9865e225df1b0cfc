"""The layout of the sample scene: the class map, and where each cell's objects go.

The plane is cut into 64 px cells ("parcels") grouped into 4×4-cell street blocks in districts
(residential, industrial, green).  :func:`cells` decides, from an integer hash of
``(seed, cell_x, cell_y)``, each cell's type (building, parking, park, clutter lot, open grass),
the roads along block edges, the building (footprint, height, roof, and whether it stands at each
date: demolitions and new construction), its terrace, and the trees, clutter patches and cars.
Geometry is in pixels relative to the cell's top-left corner.  No pixels here: the rendering
turns these parameters into images.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np

from .hashing import hash2, stream_key, unit

CLASSES: List[Tuple[int, str, Tuple[int, int, int]]] = [
    (1, "impervious", (255, 255, 255)), (2, "building", (0, 0, 255)),
    (3, "low vegetation", (0, 255, 255)), (4, "tree", (0, 255, 0)), (5, "car", (255, 255, 0)),
    (6, "clutter", (255, 0, 0))]
# class values of CLASSES
IMP, BLD, LOW, TREE, CAR, CLUT = 1, 2, 3, 4, 5, 6

CELL = 64                        # parcel edge in pixels (32 m)
_BLOCK = 4                       # cells per street block edge; roads run along block edges

# cell types
T_BUILDING, T_PARKING, T_PARK, T_CLUTTER, T_OPEN = 0, 1, 2, 3, 4
# type probabilities per district (residential, industrial, green), in cell-type order
_TYPE_P = np.array([[0.50, 0.09, 0.17, 0.07, 0.17],
                    [0.45, 0.24, 0.05, 0.15, 0.11],
                    [0.12, 0.05, 0.56, 0.07, 0.20]])
_DISTRICT_P = np.array([0.5, 0.25, 0.25])

# roof colours (R, G, B, NIR) before brightness and tint: a roof's colour is a property of its
# building, drawn with the cell's other parameters
_ROOFS = np.array([(176, 88, 68, 122), (74, 70, 76, 68), (150, 150, 152, 134),
                   (212, 210, 204, 172), (108, 124, 142, 106)], dtype=np.float64)
_ROOF_P = np.array([0.30, 0.20, 0.25, 0.12, 0.13])


def _pick(u: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Categorical draw: index into the last axis of ``probs`` (rows already selected)."""
    cum = np.cumsum(probs, axis=-1)[..., :-1]
    return (u[..., None] >= cum).sum(axis=-1)


def cells(seed: int, cy: np.ndarray, cx: np.ndarray) -> Dict[str, np.ndarray]:
    """Parameters of the cells at rows cy (n×1) and columns cx (1×m); arrays of shape n×m.

    ``trees``, ``patches`` and ``cars`` are lists of such dicts, one per object slot.
    """
    shape = np.broadcast_shapes(cy.shape, cx.shape)
    zero = np.zeros((1, 1), dtype=np.int64)

    def u(name: str) -> np.ndarray:
        return np.broadcast_to(unit(stream_key(seed, name), cy, cx), shape)

    def span(name: str, lo: Any, hi: Any) -> np.ndarray:
        """Integer uniform in [lo, hi] (inclusive), per cell."""
        return (lo + np.floor(u(name) * (np.asarray(hi) - lo + 1))).astype(np.int64)

    c: Dict[str, np.ndarray] = {}
    wh = np.where(unit(stream_key(seed, "road-h"), cy // _BLOCK, zero) < 0.3, 16, 12)
    wv = np.where(unit(stream_key(seed, "road-v"), zero, cx // _BLOCK) < 0.3, 16, 12)
    rw_top = np.broadcast_to(np.where(cy % _BLOCK == 0, wh, 0), shape)
    rw_left = np.broadcast_to(np.where(cx % _BLOCK == 0, wv, 0), shape)
    c["rw_top"], c["rw_left"] = rw_top, rw_left
    ux0, uy0, ux1, uy1 = rw_left + 3, rw_top + 3, CELL - 3, CELL - 3
    uw, uh = ux1 - ux0, uy1 - uy0
    c["ux0"], c["uy0"] = ux0, uy0

    district = np.broadcast_to(
        _pick(unit(stream_key(seed, "district"), cy // _BLOCK, cx // _BLOCK), _DISTRICT_P),
        shape)
    ctype = _pick(u("type"), _TYPE_P[district])
    c["type"] = ctype
    res, ind = district == 0, district == 1

    # buildings (geometry exists in every cell; presence per date below)
    lo = np.select([res, ind], [0.45, 0.65], 0.40)
    hi = np.select([res, ind], [0.85, 0.98], 0.70)
    bw = np.maximum(12, np.floor(uw * (lo + (hi - lo) * u("bw")))).astype(np.int64)
    bh = np.maximum(12, np.floor(uh * (lo + (hi - lo) * u("bh")))).astype(np.int64)
    bx0 = ux0 + np.floor(u("bx") * (uw - bw + 1)).astype(np.int64)
    by0 = uy0 + np.floor(u("by") * (uh - bh + 1)).astype(np.int64)
    bx1, by1 = bx0 + bw, by0 + bh
    notch = u("notch") < np.select([res, ind], [0.4, 0.2], 0.3)
    corner = np.floor(u("corner") * 4).astype(np.int64)
    nw = np.floor(bw * (0.3 + 0.25 * u("nw"))).astype(np.int64)
    nh = np.floor(bh * (0.3 + 0.25 * u("nh"))).astype(np.int64)
    nx0 = np.where(corner & 1, bx0, bx1 - nw)
    ny0 = np.where(corner & 2, by0, by1 - nh)
    c.update(bx0=bx0, bx1=bx1, by0=by0, by1=by1,
             nx0=np.where(notch, nx0, 0), nx1=np.where(notch, nx0 + nw, 0),
             ny0=np.where(notch, ny0, 0), ny1=np.where(notch, ny0 + nh, 0))
    height = np.select([res, ind], [3 + 9 * u("bz"), 8 + 17 * u("bz")], 3 + 6 * u("bz"))
    c["height"] = height
    c["gable"] = u("gable") < np.select([res, ind], [0.65, 0.1], 0.4)
    c["ridge"] = 1.5 + 2.5 * u("ridge")
    c["along_x"] = bw >= bh
    c["shadow"] = np.clip(np.round(height * 0.5), 2, 6).astype(np.int64)
    roof = _ROOFS[_pick(u("roof"), _ROOF_P)]                       # n×m×4
    bright = 0.88 + 0.24 * u("roof-bright")
    tint = (u("roof-tint") - 0.5) * 16.0
    roof = roof * bright[..., None] + np.stack([tint, 0 * tint, -tint, 0 * tint], axis=-1)
    c["roof"] = np.moveaxis(roof, -1, 0)                          # 4×n×m

    has1 = ctype == T_BUILDING
    demolished = has1 & (u("demolish") < 0.12)
    built = ((ctype == T_OPEN) | (ctype == T_CLUTTER)) & (u("build") < 0.3)
    c["has1"], c["has2"] = has1, (has1 & ~demolished) | built
    c["demol_class"] = np.where(u("demol-class") < 0.5, CLUT, LOW)
    terrace = has1 & (u("terrace") < 0.5)
    e = span("terrace-e", 2, 4)
    c["tx0"] = np.where(terrace, np.maximum(ux0, bx0 - e), 0)
    c["tx1"] = np.where(terrace, np.minimum(ux1, bx1 + e), 0)
    c["ty0"] = np.maximum(uy0, by0 - e)
    c["ty1"] = np.minimum(uy1, by1 + e)

    # trees: up to 5 discs inside the usable box
    park = ctype == T_PARK
    n_trees = np.select(
        [park, ctype == T_OPEN, ctype == T_BUILDING, ctype == T_PARKING],
        [2 + np.floor(4 * u("n-trees")),
         (u("n-trees") < 0.5) * 1 + (u("n-trees") < 0.15) * 1,
         (u("n-trees") < 0.35) * 1, (u("n-trees") < 0.25) * 1], 0)
    rmin, rmax = np.where(park, 4, 3), np.where(park, 10, 7)
    trees = []
    for k in range(5):
        r = span(f"tree-r{k}", rmin, rmax)
        trees.append(dict(
            on=k < n_trees, r=r,
            x=ux0 + r + np.floor(u(f"tree-x{k}") * (uw - 2 * r + 1)).astype(np.int64),
            y=uy0 + r + np.floor(u(f"tree-y{k}") * (uh - 2 * r + 1)).astype(np.int64),
            z=5 + 13 * u(f"tree-z{k}"), shade=0.85 + 0.3 * u(f"tree-b{k}")))
    c["trees"] = trees  # type: ignore[assignment]

    # clutter patches: rectangles inside the usable box
    lot = ctype == T_CLUTTER
    n_clutter = np.where(lot, 2 + (u("n-clutter") < 0.5), (u("n-clutter") < 0.35) * 1)
    n_clutter = np.where(ctype == T_PARKING, 0, n_clutter)
    patches = []
    for k in range(3):
        pw = span(f"clut-w{k}", np.where(lot, 8, 3), np.where(lot, 22, 9))
        ph = span(f"clut-h{k}", np.where(lot, 8, 3), np.where(lot, 22, 9))
        x0 = ux0 + np.floor(u(f"clut-x{k}") * (uw - pw + 1)).astype(np.int64)
        y0 = uy0 + np.floor(u(f"clut-y{k}") * (uh - ph + 1)).astype(np.int64)
        on = k < n_clutter
        patches.append(dict(x0=np.where(on, x0, 0), x1=np.where(on, x0 + pw, 0), y0=y0,
                            y1=y0 + ph, colour=_pick(u(f"clut-c{k}"), np.full(6, 1 / 6)),
                            z=0.5 + 2.5 * u(f"clut-z{k}")))
    c["patches"] = patches  # type: ignore[assignment]

    # cars on roads: two lanes per road direction; parking rows in parking cells
    cars = []
    for k in range(4):
        horizontal = k < 2
        road = rw_top if horizontal else rw_left
        on = (road > 0) & (u(f"car-on{k}") < 0.35)
        lane = np.where(k % 2 == 0, 2, road - 6)
        pos = np.floor(u(f"car-p{k}") * (CELL - 9)).astype(np.int64)
        colour = _pick(u(f"car-c{k}"), np.full(8, 1 / 8))
        if horizontal:
            box = (pos, pos + 9, lane, lane + 4)
        else:
            box = (lane, lane + 4, pos, pos + 9)
        cars.append(dict(x0=np.where(on, box[0], 0), x1=np.where(on, box[1], 0),
                         y0=box[2], y1=box[3], colour=colour))
    c["cars"] = cars  # type: ignore[assignment]
    c["lot_occupied"] = np.broadcast_to(hash2(stream_key(seed, "lot-occ"), cy, cx), shape)
    c["lot_colours"] = np.broadcast_to(hash2(stream_key(seed, "lot-col"), cy, cx), shape)
    return c
