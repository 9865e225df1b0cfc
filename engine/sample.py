"""A synthetic, georeferenced two-date sample scene for trying the engine without real data.

``make_sample`` writes a small town at 0.5 m (R, G, B, NIR images of two dates, a DSM, per-date
class labels and a building-change mask).  Every pixel is a pure function of its global
coordinates and the seed: the plane is cut into 64 px cells ("parcels") grouped into 4×4-cell
street blocks; each cell's content (building, parking, park, clutter lot, open grass, trees,
cars, clutter patches, demolition or new construction) is decided by an integer hash of
``(seed, cell_x, cell_y)``, and textures are value noise on hashed lattices.  The scene is rendered
and written window by window (256-row strips, 2048-column chunks), so memory does not grow with
the size and strip boundaries leave no seams.
"""
from __future__ import annotations

import contextlib
import json
import os
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import Affine
from rasterio.windows import Window

from .io.rasters import bounded_gdal_cache

from .jobs import CancelledFn, InputError, Job, ProgressFn, atomic_output

CLASSES: List[Tuple[int, str, Tuple[int, int, int]]] = [
    (1, "impervious", (255, 255, 255)), (2, "building", (0, 0, 255)),
    (3, "low vegetation", (0, 255, 255)), (4, "tree", (0, 255, 0)), (5, "car", (255, 255, 0)),
    (6, "clutter", (255, 0, 0))]
BANDS = ["R", "G", "B", "NIR"]
GSD_M = 0.5
CRS = "EPSG:32633"
ORIGIN = (500000.0, 5000000.0)   # map coordinates of the top-left corner (seed-independent)
MIN_SIZE = 64
STRIP_ROWS = 256                 # rows rendered and written per step (a multiple of _TILE)
CHUNK_COLS = 2048                # columns rendered at once inside a strip (bounds memory)
OUTPUTS = ("t1", "t2", "dsm", "labels", "labels_t2", "change")

_TILE = 256
_CELL = 64                       # parcel edge in pixels (32 m)
_BLOCK = 4                       # cells per street block edge; roads run along block edges
_LABEL_NODATA = 255              # the engine's class nodata value (never present here)

# class values
_IMP, _BLD, _LOW, _TREE, _CAR, _CLUT = 1, 2, 3, 4, 5, 6
# cell types
_T_BUILDING, _T_PARKING, _T_PARK, _T_CLUTTER, _T_OPEN = 0, 1, 2, 3, 4
# type probabilities per district (residential, industrial, green), in cell-type order
_TYPE_P = np.array([[0.50, 0.09, 0.17, 0.07, 0.17],
                    [0.45, 0.24, 0.05, 0.15, 0.11],
                    [0.12, 0.05, 0.56, 0.07, 0.20]])
_DISTRICT_P = np.array([0.5, 0.25, 0.25])

# spectral signatures (R, G, B, NIR), before texture and noise
_GRASS_LUSH = (80.0, 122.0, 58.0, 196.0)
_GRASS_DRY = (122.0, 130.0, 80.0, 166.0)
_ASPHALT = (96.0, 98.0, 102.0, 88.0)
_MARKING = (205.0, 205.0, 200.0, 175.0)
_CONCRETE = (152.0, 151.0, 147.0, 132.0)
_PAVING = (172.0, 160.0, 146.0, 140.0)
_TREE_RGBN = (46.0, 84.0, 44.0, 206.0)
_BARE = (138.0, 112.0, 86.0, 124.0)
_FRESH_GRASS = (112.0, 140.0, 78.0, 172.0)
_ROOFS = np.array([(176, 88, 68, 122), (74, 70, 76, 68), (150, 150, 152, 134),
                   (212, 210, 204, 172), (108, 124, 142, 106)], dtype=np.float64)
_ROOF_P = np.array([0.30, 0.20, 0.25, 0.12, 0.13])
_CARS = np.array([(222, 222, 222, 190), (38, 38, 44, 40), (160, 162, 166, 140),
                  (182, 32, 30, 120), (30, 52, 150, 70), (200, 200, 205, 175),
                  (90, 92, 96, 80), (120, 20, 24, 95)], dtype=np.float32).T.copy()
_CLUTTER = np.array([(140, 114, 88, 124), (152, 82, 50, 104), (50, 82, 142, 92),
                     (214, 122, 40, 140), (122, 122, 116, 112), (200, 200, 194, 168)],
                    dtype=np.float64)

# t2 differs radiometrically: brighter, warmer, drier vegetation; all jittered by the seed
_T2_GAIN = (1.07, 1.03, 0.97, 0.94)
_T2_OFFSET = (6.0, 4.0, 0.0, -4.0)
_NOISE_SIGMA = 7.0

_U64 = np.uint64
_M64 = (1 << 64) - 1
_C1, _C2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_PX, _PY = _U64(0x9E3779B97F4A7C15), _U64(0xD1B54A32D192ED03)


# --------------------------------------------------------------------------- hashing
def _mix_int(z: int) -> int:
    """splitmix64 finaliser on a Python int."""
    z &= _M64
    z = ((z ^ (z >> 30)) * _C1) & _M64
    z = ((z ^ (z >> 27)) * _C2) & _M64
    return z ^ (z >> 31)


@lru_cache(maxsize=4096)
def _key(seed: int, name: str) -> np.uint64:
    """A 64-bit key for one named random stream of one seed."""
    return _U64(_mix_int(_mix_int(seed & _M64) ^ zlib.crc32(name.encode()) * 0x9E3779B97F4A7C15))


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, in place on a uint64 array."""
    z ^= z >> _U64(30)
    z *= _U64(_C1)
    z ^= z >> _U64(27)
    z *= _U64(_C2)
    z ^= z >> _U64(31)
    return z


def _hash2(key: np.uint64, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """uint64 hash of ``(key, a, b)`` for integer arrays broadcast together (a and b >= 0)."""
    with np.errstate(over="ignore"):
        z = np.asarray(a, dtype=np.int64).astype(np.uint64) * _PX
        z = np.ascontiguousarray(z)
        z ^= key
        z = _mix(z)
        z = z + np.asarray(b, dtype=np.int64).astype(np.uint64) * _PY
        return _mix(z)


def _unit(key: np.uint64, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Uniform float64 in [0, 1) from the hash of ``(key, a, b)``."""
    return (_hash2(key, a, b) >> _U64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _value_noise(key: np.uint64, scale: int, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Smooth value noise in [0, 1) at lattice spacing ``scale`` px on rows ys × columns xs."""
    iy, ix = ys // scale, xs // scale
    gy = np.arange(iy[0], iy[-1] + 2)[:, None]
    gx = np.arange(ix[0], ix[-1] + 2)[None, :]
    lattice = ((_hash2(key, gy, gx) >> _U64(40)).astype(np.float32) * np.float32(1.0 / (1 << 24)))

    def smooth(i: np.ndarray, v: np.ndarray) -> np.ndarray:
        f = ((v - i * scale).astype(np.float32) + np.float32(0.5)) / np.float32(scale)
        return f * f * (np.float32(3.0) - np.float32(2.0) * f)

    tx, ty = smooth(ix, xs), smooth(iy, ys)
    jx = ix - ix[0]
    rows = lattice[:, jx] * (np.float32(1.0) - tx) + lattice[:, jx + 1] * tx
    jy = iy - iy[0]
    return rows[jy] * (np.float32(1.0) - ty)[:, None] + rows[jy + 1] * ty[:, None]


# --------------------------------------------------------------------------- cells
def _pick(u: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Categorical draw: index into the last axis of ``probs`` (rows already selected)."""
    cum = np.cumsum(probs, axis=-1)[..., :-1]
    return (u[..., None] >= cum).sum(axis=-1)


def _cells(seed: int, cy: np.ndarray, cx: np.ndarray) -> Dict[str, np.ndarray]:
    """Parameters of the cells at rows cy (n×1) and columns cx (1×m); arrays of shape n×m."""
    shape = np.broadcast_shapes(cy.shape, cx.shape)
    zero = np.zeros((1, 1), dtype=np.int64)

    def u(name: str) -> np.ndarray:
        return np.broadcast_to(_unit(_key(seed, name), cy, cx), shape)

    def span(name: str, lo: Any, hi: Any) -> np.ndarray:
        """Integer uniform in [lo, hi] (inclusive), per cell."""
        return (lo + np.floor(u(name) * (np.asarray(hi) - lo + 1))).astype(np.int64)

    c: Dict[str, np.ndarray] = {}
    wh = np.where(_unit(_key(seed, "road-h"), cy // _BLOCK, zero) < 0.3, 16, 12)
    wv = np.where(_unit(_key(seed, "road-v"), zero, cx // _BLOCK) < 0.3, 16, 12)
    rw_top = np.broadcast_to(np.where(cy % _BLOCK == 0, wh, 0), shape)
    rw_left = np.broadcast_to(np.where(cx % _BLOCK == 0, wv, 0), shape)
    c["rw_top"], c["rw_left"] = rw_top, rw_left
    ux0, uy0, ux1, uy1 = rw_left + 3, rw_top + 3, _CELL - 3, _CELL - 3
    uw, uh = ux1 - ux0, uy1 - uy0
    c["ux0"], c["uy0"] = ux0, uy0

    district = np.broadcast_to(
        _pick(_unit(_key(seed, "district"), cy // _BLOCK, cx // _BLOCK), _DISTRICT_P), shape)
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

    has1 = ctype == _T_BUILDING
    demolished = has1 & (u("demolish") < 0.12)
    built = ((ctype == _T_OPEN) | (ctype == _T_CLUTTER)) & (u("build") < 0.3)
    c["has1"], c["has2"] = has1, (has1 & ~demolished) | built
    c["demol_class"] = np.where(u("demol-class") < 0.5, _CLUT, _LOW)
    terrace = has1 & (u("terrace") < 0.5)
    e = span("terrace-e", 2, 4)
    c["tx0"] = np.where(terrace, np.maximum(ux0, bx0 - e), 0)
    c["tx1"] = np.where(terrace, np.minimum(ux1, bx1 + e), 0)
    c["ty0"] = np.maximum(uy0, by0 - e)
    c["ty1"] = np.minimum(uy1, by1 + e)

    # trees: up to 5 discs inside the usable box
    park = ctype == _T_PARK
    n_trees = np.select(
        [park, ctype == _T_OPEN, ctype == _T_BUILDING, ctype == _T_PARKING],
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
    lot = ctype == _T_CLUTTER
    n_clutter = np.where(lot, 2 + (u("n-clutter") < 0.5), (u("n-clutter") < 0.35) * 1)
    n_clutter = np.where(ctype == _T_PARKING, 0, n_clutter)
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
        pos = np.floor(u(f"car-p{k}") * (_CELL - 9)).astype(np.int64)
        colour = _pick(u(f"car-c{k}"), np.full(8, 1 / 8))
        if horizontal:
            box = (pos, pos + 9, lane, lane + 4)
        else:
            box = (lane, lane + 4, pos, pos + 9)
        cars.append(dict(x0=np.where(on, box[0], 0), x1=np.where(on, box[1], 0),
                         y0=box[2], y1=box[3], colour=colour))
    c["cars"] = cars  # type: ignore[assignment]
    c["lot_occupied"] = np.broadcast_to(_hash2(_key(seed, "lot-occ"), cy, cx), shape)
    c["lot_colours"] = np.broadcast_to(_hash2(_key(seed, "lot-col"), cy, cx), shape)
    return c


# --------------------------------------------------------------------------- rendering
def _t2_radiometry(seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per-band gain and offset of date t2 (seed-jittered)."""
    jit = _unit(_key(seed, "t2-radiometry"), np.arange(8)[:, None], np.zeros((1, 1), np.int64))
    gain = np.array(_T2_GAIN) * (0.98 + 0.04 * jit[:4, 0])
    offset = np.array(_T2_OFFSET) + (jit[4:, 0] - 0.5) * 6.0
    return gain.astype(np.float32), offset.astype(np.float32)


def _noise(key: np.uint64, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Independent per-pixel triangular noise in (-1, 1), 4×h×w float32."""
    raw = _hash2(key, ys[:, None], xs[None, :]).astype("<u8").view(np.uint8)
    raw = raw.reshape(len(ys), len(xs), 8)
    out = np.empty((4, len(ys), len(xs)), dtype=np.float32)
    for b in range(4):
        np.add(raw[..., 2 * b], raw[..., 2 * b + 1], out=out[b], dtype=np.float32)
    out *= np.float32(1.0 / 255.0)
    out -= np.float32(1.0)
    return out


def _to_u8(img: np.ndarray) -> np.ndarray:
    np.rint(img, out=img)
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)


def _render(seed: int, y0: int, y1: int, x0: int, x1: int) -> Dict[str, np.ndarray]:
    """Render the window rows y0:y1, columns x0:x1 of the scene of ``seed``.

    Returns ``t1``/``t2`` (4×h×w uint8), ``dsm`` (h×w float32), ``labels``, ``labels_t2`` and
    ``change`` (h×w uint8).  A pure function of global pixel coordinates: any tiling of the plane
    into windows gives the same pixels.  Renders the covering whole cells, then crops.
    """
    cy0, cx0 = y0 // _CELL, x0 // _CELL
    out = _render_cells(seed, cy0, -(-y1 // _CELL), cx0, -(-x1 // _CELL))
    oy, ox, h, w = y0 - cy0 * _CELL, x0 - cx0 * _CELL, y1 - y0, x1 - x0
    if (oy, ox) == (0, 0) and out["change"].shape == (h, w):
        return out
    return {k: np.ascontiguousarray(v[..., oy:oy + h, ox:ox + w]) for k, v in out.items()}


def _render_cells(seed: int, cy0: int, cy1: int, cx0: int, cx1: int) -> Dict[str, np.ndarray]:
    """Render whole cells cy0:cy1 × cx0:cx1 (see :func:`_render`).

    Pixel arrays are laid out n×C×m×C (cell row, row in cell, cell column, column in cell), a
    free reshape of the h×w image, so per-cell parameters (n×1×m×1) and in-cell coordinates broadcast
    without being expanded to pixels.
    """
    n, m = cy1 - cy0, cx1 - cx0
    shape = (n, _CELL, m, _CELL)
    ys = np.arange(cy0 * _CELL, cy1 * _CELL, dtype=np.int64)
    xs = np.arange(cx0 * _CELL, cx1 * _CELL, dtype=np.int64)
    cy = np.arange(cy0, cy1, dtype=np.int64)[:, None]
    cx = np.arange(cx0, cx1, dtype=np.int64)[None, :]
    c = _cells(seed, cy, cx)
    f32 = np.float32

    def P(a: Any, dtype: Any = np.int16) -> np.ndarray:
        """A per-cell array, shaped to broadcast against the pixels."""
        return np.asarray(a).astype(dtype, copy=False)[:, None, :, None]

    def px(a: np.ndarray) -> np.ndarray:
        """An h×w (or k×h×w) pixel array in the cell layout (a view)."""
        return a.reshape(a.shape[:-2] + shape)

    ly = np.arange(_CELL, dtype=np.int16)[None, :, None, None]
    lx = np.arange(_CELL, dtype=np.int16)[None, None, None, :]

    def rect(x_0: Any, x_1: Any, y_0: Any, y_1: Any, qx: np.ndarray = lx,
             qy: np.ndarray = ly) -> np.ndarray:
        return ((qx >= P(x_0)) & (qx < P(x_1))) & ((qy >= P(y_0)) & (qy < P(y_1)))

    n_fine = px(_value_noise(_key(seed, "n-fine"), 3, ys, xs))
    n_mid = px(_value_noise(_key(seed, "n-mid"), 12, ys, xs))
    n_big = px(_value_noise(_key(seed, "n-big"), 160, ys, xs))
    terrain = _value_noise(_key(seed, "terrain"), 2048, ys, xs) * f32(30.0)
    terrain += _value_noise(_key(seed, "terrain-2"), 256, ys, xs) * f32(4.0)
    terrain += f32(180.0)

    lab = np.full(shape, _LOW, dtype=np.uint8)
    col = np.empty((4,) + shape, dtype=np.float32)
    dry = np.clip(n_big * f32(1.6) - f32(0.3), 0, 1)
    for b in range(4):
        np.multiply(dry, f32(_GRASS_DRY[b] - _GRASS_LUSH[b]), out=col[b])
        col[b] += f32(_GRASS_LUSH[b])
    del dry, n_big
    amp = np.full(shape, 0.18, dtype=np.float32)
    objh = n_fine * f32(0.4)

    def paint(mask: np.ndarray, label: Any, colour: Any, amplitude: Optional[float],
              height: Any) -> None:
        if label is not None:
            np.copyto(lab, label, where=mask, casting="unsafe")
        for b in range(4):
            np.copyto(col[b], colour[b], where=mask, casting="unsafe")
        if amplitude is not None:
            np.copyto(amp, f32(amplitude), where=mask)
        if height is not None:
            np.copyto(objh, height, where=mask, casting="unsafe")

    # roads with dashed centre lines
    rwt, rwl = P(c["rw_top"]), P(c["rw_left"])
    road = (ly < rwt) | (lx < rwl)
    paint(road, _IMP, _ASPHALT, 0.08, 0.0)
    dash_x = ((xs // 8) % 2 == 0).reshape(1, 1, m, _CELL)
    dash_y = ((ys // 8) % 2 == 0).reshape(n, _CELL, 1, 1)
    marks = (rwt > 0) & (ly == rwt // 2) & (lx >= rwl) & dash_x
    marks |= (rwl > 0) & (lx == rwl // 2) & (ly >= rwt) & dash_y
    paint(marks, None, _MARKING, 0.04, None)
    del marks

    # parking lots with two rows of parked cars
    lot = (P(c["type"], np.int8) == _T_PARKING) & ~road
    paint(lot, _IMP, _CONCRETE, 0.06, 0.0)
    ux0, uy0 = P(c["ux0"]), P(c["uy0"])
    rel = lx - ux0 - 1
    slot = rel // 6
    in_slot = (rel >= 0) & (rel % 6 < 4) & (slot < (_CELL - 4 - ux0) // 6)
    row1 = (ly >= _CELL - 14) & (ly < _CELL - 5)
    in_row = ((ly >= uy0 + 2) & (ly < uy0 + 11)) | row1
    bit = np.clip(slot + 10 * row1, 0, 19).astype(np.uint64)
    parked = lot & in_row & in_slot
    parked &= ((P(c["lot_occupied"], np.uint64) >> bit) & _U64(1)) == _U64(0)
    car_colour = np.full(shape, -1, dtype=np.int8)
    np.copyto(car_colour, (P(c["lot_colours"], np.uint64) >> (bit * _U64(3))) & _U64(7),
              where=parked, casting="unsafe")
    del rel, slot, in_slot, row1, in_row, bit, parked, lot

    # terraces around buildings, clutter patches, cars on roads, trees
    paint(rect(c["tx0"], c["tx1"], c["ty0"], c["ty1"]), _IMP, _PAVING, 0.06, 0.1)
    for p in c["patches"]:  # type: ignore[union-attr]
        colour = _CLUTTER[p["colour"]]
        paint(rect(p["x0"], p["x1"], p["y0"], p["y1"]), _CLUT,
              [P(colour[..., b], f32) for b in range(4)], 0.2, P(p["z"], f32))
    for car in c["cars"]:  # type: ignore[union-attr]
        np.copyto(car_colour, P(car["colour"], np.int8),
                  where=rect(car["x0"], car["x1"], car["y0"], car["y1"]))
    cars = car_colour >= 0
    idx = np.maximum(car_colour, 0)
    paint(cars, _CAR, [_CARS[b][idx] for b in range(4)], 0.05, 1.5)
    del idx, car_colour, cars
    for t in c["trees"]:  # type: ignore[union-attr]
        r = P(t["r"])
        dx = lx - P(t["x"])
        dy = ly - P(t["y"])
        d2 = dx * dx + dy * dy
        inside = P(t["on"], bool) & (d2 < r * r)
        q = f32(1.0) - d2 * (f32(1.0) / (r * r).astype(f32))
        shade = f32(0.72) + f32(0.38) * q
        shade -= (dx * (f32(0.1) / r.astype(f32)) + dy * (f32(0.1) / r.astype(f32)))
        shade *= P(t["shade"], f32)
        paint(inside, _TREE, [f32(_TREE_RGBN[b]) * shade for b in range(4)], 0.24,
              P(t["z"], f32) * (f32(0.6) + f32(0.4) * q))
    del r, dx, dy, d2, inside, q, shade

    # buildings: an L-shaped or rectangular footprint, flat or gabled roof, cast shadow
    def footprint(qx: np.ndarray, qy: np.ndarray) -> np.ndarray:
        return (rect(c["bx0"], c["bx1"], c["by0"], c["by1"], qx, qy)
                & ~rect(c["nx0"], c["nx1"], c["ny0"], c["ny1"], qx, qy))

    fp = footprint(lx, ly)
    s = P(c["shadow"])
    shadow = footprint(lx - s, ly - s) & ~fp
    has1, has2 = P(c["has1"], bool), P(c["has2"], bool)
    b1, b2 = fp & has1, fp & has2
    del fp
    along_x = P(c["along_x"], bool)
    lo = np.where(along_x, P(c["by0"]), P(c["bx0"]))
    ext = (np.where(along_x, P(c["by1"]), P(c["bx1"])) - lo).astype(f32)
    pos = np.where(along_x, ly, lx) - lo                      # 0 .. ext-1 across the ridge
    off = (f32(2.0) * pos + f32(1.0) - ext) * (f32(1.0) / ext)  # -1 .. 1
    gable = P(c["gable"], bool)
    roof_shade = np.where(gable, np.where(off < 0, f32(1.12), f32(0.84)), f32(1.0))
    roof_col = np.stack([P(c["roof"][b], f32) * roof_shade for b in range(4)])
    roof_h = P(c["height"], f32) + np.where(gable, P(c["ridge"], f32) *
                                            (f32(1.0) - np.abs(off)), f32(0.0))
    del lo, ext, pos, off, gable, along_x, roof_shade

    dsm = objh
    np.copyto(dsm, roof_h, where=b1)
    dsm = dsm.reshape(terrain.shape)
    dsm += terrain
    del roof_h, terrain

    labels = lab.copy()
    np.copyto(labels, np.uint8(_BLD), where=b1)
    col1 = col.copy()
    np.copyto(col1, roof_col, where=b1)
    amp1 = amp.copy()
    np.copyto(amp1, f32(0.05), where=b1)
    dark = np.where(shadow & has1, f32(0.55), f32(1.0))

    # date t2: demolished footprints become bare soil or fresh grass, new buildings appear
    gone = b1 & ~b2
    demol_class = P(c["demol_class"], np.uint8)
    labels2 = lab
    np.copyto(labels2, np.uint8(_BLD), where=b2)
    np.copyto(labels2, demol_class, where=gone)
    paint(gone & (demol_class == _CLUT), None, _BARE, 0.22, None)
    paint(gone & (demol_class == _LOW), None, _FRESH_GRASS, 0.2, None)
    np.copyto(col, roof_col, where=b2)
    np.copyto(amp, f32(0.05), where=b2)
    dark2 = np.where(shadow & has2, f32(0.55), f32(1.0))
    change = (b1 ^ b2).astype(np.uint8)
    del roof_col, b1, b2, gone, shadow

    tex = (n_fine - f32(0.5)) + f32(0.6) * (n_mid - f32(0.5))
    del n_fine, n_mid
    tex1 = amp1 * tex
    tex1 += f32(1.0)
    tex1 *= dark
    tex *= amp
    tex += f32(1.0)
    tex *= dark2
    del dark, dark2, amp1, amp

    hw = (n * _CELL, m * _CELL)
    img1 = col1.reshape((4,) + hw)
    img1 *= tex1.reshape(hw)
    img1 += _noise(_key(seed, "noise-t1"), ys, xs) * f32(_NOISE_SIGMA)
    img2 = col.reshape((4,) + hw)
    img2 *= tex.reshape(hw)
    gain, offset = _t2_radiometry(seed)
    img2 *= gain[:, None, None]
    img2 += offset[:, None, None]
    labels2 = labels2.reshape(hw)
    veg = (labels2 == _LOW) | (labels2 == _TREE)
    img2[0] += veg * f32(6.0)           # late-season vegetation: redder, less NIR
    img2[3] -= veg * f32(10.0)
    img2 += _noise(_key(seed, "noise-t2"), ys, xs) * f32(_NOISE_SIGMA)
    return {"t1": _to_u8(img1), "t2": _to_u8(img2), "dsm": dsm,
            "labels": labels.reshape(hw), "labels_t2": labels2, "change": change.reshape(hw)}


# --------------------------------------------------------------------------- writing
def _transform() -> Affine:
    return Affine(GSD_M, 0.0, ORIGIN[0], 0.0, -GSD_M, ORIGIN[1])


def _profile(size: int, count: int, dtype: str, **extra: Any) -> Dict[str, Any]:
    return {"driver": "GTiff", "width": size, "height": size, "count": count, "dtype": dtype,
            "crs": CRS, "transform": _transform(), "tiled": True, "blockxsize": _TILE,
            "blockysize": _TILE, "compress": "deflate", "BIGTIFF": "IF_SAFER", **extra}


def _class_colormap() -> Dict[int, Tuple[int, int, int, int]]:
    table = {v: (*rgb, 255) for v, _, rgb in CLASSES}
    table[_LABEL_NODATA] = (0, 0, 0, 0)
    return table


def _class_tags() -> Dict[str, str]:
    """Class names in the band metadata, in the same form the engine writes for predictions."""
    tags = {f"CLASS_{v}": name for v, name, _ in CLASSES}
    tags["RS_SEG_CLASSES"] = json.dumps(
        [{"value": v, "name": name, "color": list(rgb)} for v, name, rgb in CLASSES])
    return tags


def _open_outputs(tmps: Dict[str, Path], size: int, seed: int,
                  stack: contextlib.ExitStack) -> Dict[str, Any]:
    img = _profile(size, 4, "uint8", predictor=2)
    profiles = {"t1": img, "t2": img, "dsm": _profile(size, 1, "float32", predictor=3),
                "labels": _profile(size, 1, "uint8", nodata=_LABEL_NODATA),
                "labels_t2": _profile(size, 1, "uint8", nodata=_LABEL_NODATA),
                "change": _profile(size, 1, "uint8")}
    info = {"t1": "before", "t2": "after", "dsm": "surface height of date t1 (m)",
            "labels": "classes of date t1", "labels_t2": "classes of date t2",
            "change": "1 where a building appeared or disappeared between t1 and t2"}
    dsts: Dict[str, Any] = {}
    for name in OUTPUTS:
        dst = stack.enter_context(rasterio.open(tmps[name], "w", **profiles[name]))
        dst.update_tags(RS_SEG_SAMPLE=f"seed={seed}", DESCRIPTION=info[name])
        if name in ("t1", "t2"):
            for i, band in enumerate(BANDS, start=1):
                dst.set_band_description(i, band)
            # GDAL flags the 4th byte band of an RGB TIFF as alpha; NIR is data, not a mask.
            dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue,
                               ColorInterp.undefined]
        elif name == "dsm":
            dst.set_band_description(1, "height")
            dst.set_band_unit(1, "m")
        elif name in ("labels", "labels_t2"):
            dst.set_band_description(1, "class")
            dst.write_colormap(1, _class_colormap())
            dst.update_tags(1, **_class_tags())
        else:
            dst.set_band_description(1, "building change")
        dsts[name] = dst
    return dsts


def _check_args(size: Any, seed: Any) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise InputError(f"size must be a whole number of pixels (got {size!r}); pass e.g. "
                         f"size=1024")
    if size < MIN_SIZE:
        raise InputError(f"size {size} is too small for a sample scene; use size >= {MIN_SIZE} "
                         f"(e.g. 1024)")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"seed must be an integer (got {seed!r}); pass e.g. seed=0")


def make_sample(out_dir: str | os.PathLike, size: int = 1024, seed: int = 0,
                progress: Optional[ProgressFn] = None,
                cancelled: Optional[CancelledFn] = None) -> Dict[str, Path]:
    """Write a synthetic two-date scene of ``size``×``size`` px into ``out_dir``.

    Files: ``t1.tif``/``t2.tif`` (R, G, B, NIR uint8), ``dsm.tif`` (float32 m, date t1),
    ``labels.tif``/``labels_t2.tif`` (classes 1..6 of :data:`CLASSES`, with colour table) and
    ``change.tif`` (uint8, 1 where a building appeared or disappeared).  All share CRS
    EPSG:32633 and a 0.5 m grid.  Deterministic for a seed; streams in 256-row strips; a cancel
    raises :class:`~engine.jobs.Cancelled` and leaves no file behind.  Returns name -> path.
    """
    _check_args(size, seed)
    size, seed = int(size), int(seed)
    job = Job(progress, cancelled)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder {out} ({exc.strerror}); choose a "
                         f"folder you can write to") from exc
    paths = {name: out / f"{name}.tif" for name in OUTPUTS}
    n_strips = -(-size // STRIP_ROWS)
    job.report(0.0, f"sample: rows 0/{size}")
    # a small GDAL block cache while writing: dirty tiles are compressed and flushed as the
    # strips advance instead of piling up (the default cache is 5 % of RAM); restored on exit
    with bounded_gdal_cache(), contextlib.ExitStack() as renames:
        tmps = {name: renames.enter_context(atomic_output(paths[name])) for name in OUTPUTS}
        with contextlib.ExitStack() as files:
            dsts = _open_outputs(tmps, size, seed, files)
            for i in range(n_strips):
                job.check()
                y0, y1 = i * STRIP_ROWS, min(size, (i + 1) * STRIP_ROWS)
                for x0 in range(0, size, CHUNK_COLS):
                    x1 = min(size, x0 + CHUNK_COLS)
                    window = Window(x0, y0, x1 - x0, y1 - y0)
                    for name, data in _render(seed, y0, y1, x0, x1).items():
                        if data.ndim == 2:
                            dsts[name].write(data, 1, window=window)
                        else:
                            dsts[name].write(data, window=window)
                job.report((i + 1) / n_strips, f"sample: rows {y1}/{size}")
            job.check()
    return paths
