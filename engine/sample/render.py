"""Rendering of the sample scene: the layout's cells turned into pixels.

:func:`render` paints a window of the plane: the R, G, B, NIR images of dates t1 and t2 (spectral
signatures, value-noise texture, shadows, t2's radiometric shift and sensor noise), the DSM of
date t1 (terrain plus object heights), the class labels of both dates and the building-change
mask.  A pure function of global pixel coordinates and the seed, so any tiling of the plane into
windows gives the same pixels.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from .hashing import hash2, stream_key, unit, value_noise
from .layout import BLD, CAR, CELL, CLUT, IMP, LOW, T_PARKING, TREE, cells

BANDS = ["R", "G", "B", "NIR"]   # band order of the t1/t2 images

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


def _t2_radiometry(seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per-band gain and offset of date t2 (seed-jittered)."""
    jit = unit(stream_key(seed, "t2-radiometry"), np.arange(8)[:, None],
               np.zeros((1, 1), np.int64))
    gain = np.array(_T2_GAIN) * (0.98 + 0.04 * jit[:4, 0])
    offset = np.array(_T2_OFFSET) + (jit[4:, 0] - 0.5) * 6.0
    return gain.astype(np.float32), offset.astype(np.float32)


def _noise(key: np.uint64, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Independent per-pixel triangular noise in (-1, 1), 4×h×w float32."""
    raw = hash2(key, ys[:, None], xs[None, :]).astype("<u8").view(np.uint8)
    raw = raw.reshape(len(ys), len(xs), 8)
    out = np.empty((4, len(ys), len(xs)), dtype=np.float32)
    for b in range(4):
        np.add(raw[..., 2 * b], raw[..., 2 * b + 1], out=out[b], dtype=np.float32)
    out *= np.float32(1.0 / 255.0)
    out -= np.float32(1.0)
    return out


def _to_u8(img: np.ndarray) -> np.ndarray:
    """Round and clip to 0..255 in place, then cast to uint8."""
    np.rint(img, out=img)
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)


def render(seed: int, y0: int, y1: int, x0: int, x1: int) -> Dict[str, np.ndarray]:
    """Render the window rows y0:y1, columns x0:x1 of the scene of ``seed``.

    Returns ``t1``/``t2`` (4×h×w uint8), ``dsm`` (h×w float32), ``labels``, ``labels_t2`` and
    ``change`` (h×w uint8).  A pure function of global pixel coordinates: any tiling of the plane
    into windows gives the same pixels.  Renders the covering whole cells, then crops.
    """
    cy0, cx0 = y0 // CELL, x0 // CELL
    out = _render_cells(seed, cy0, -(-y1 // CELL), cx0, -(-x1 // CELL))
    oy, ox, h, w = y0 - cy0 * CELL, x0 - cx0 * CELL, y1 - y0, x1 - x0
    if (oy, ox) == (0, 0) and out["change"].shape == (h, w):
        return out
    return {k: np.ascontiguousarray(v[..., oy:oy + h, ox:ox + w]) for k, v in out.items()}


def _render_cells(seed: int, cy0: int, cy1: int, cx0: int, cx1: int) -> Dict[str, np.ndarray]:
    """Render whole cells cy0:cy1 × cx0:cx1 (see :func:`render`).

    Pixel arrays are laid out n×C×m×C (cell row, row in cell, cell column, column in cell), a
    free reshape of the h×w image, so per-cell parameters (n×1×m×1) and in-cell coordinates
    broadcast without being expanded to pixels.
    """
    n, m = cy1 - cy0, cx1 - cx0
    shape = (n, CELL, m, CELL)
    ys = np.arange(cy0 * CELL, cy1 * CELL, dtype=np.int64)
    xs = np.arange(cx0 * CELL, cx1 * CELL, dtype=np.int64)
    cy = np.arange(cy0, cy1, dtype=np.int64)[:, None]
    cx = np.arange(cx0, cx1, dtype=np.int64)[None, :]
    c = cells(seed, cy, cx)
    f32 = np.float32

    def P(a: Any, dtype: Any = np.int16) -> np.ndarray:
        """A per-cell array, shaped to broadcast against the pixels."""
        return np.asarray(a).astype(dtype, copy=False)[:, None, :, None]

    def px(a: np.ndarray) -> np.ndarray:
        """An h×w (or k×h×w) pixel array in the cell layout (a view)."""
        return a.reshape(a.shape[:-2] + shape)

    ly = np.arange(CELL, dtype=np.int16)[None, :, None, None]
    lx = np.arange(CELL, dtype=np.int16)[None, None, None, :]

    def rect(x_0: Any, x_1: Any, y_0: Any, y_1: Any, qx: np.ndarray = lx,
             qy: np.ndarray = ly) -> np.ndarray:
        return ((qx >= P(x_0)) & (qx < P(x_1))) & ((qy >= P(y_0)) & (qy < P(y_1)))

    n_fine = px(value_noise(stream_key(seed, "n-fine"), 3, ys, xs))
    n_mid = px(value_noise(stream_key(seed, "n-mid"), 12, ys, xs))
    n_big = px(value_noise(stream_key(seed, "n-big"), 160, ys, xs))
    terrain = value_noise(stream_key(seed, "terrain"), 2048, ys, xs) * f32(30.0)
    terrain += value_noise(stream_key(seed, "terrain-2"), 256, ys, xs) * f32(4.0)
    terrain += f32(180.0)

    lab = np.full(shape, LOW, dtype=np.uint8)
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
    paint(road, IMP, _ASPHALT, 0.08, 0.0)
    dash_x = ((xs // 8) % 2 == 0).reshape(1, 1, m, CELL)
    dash_y = ((ys // 8) % 2 == 0).reshape(n, CELL, 1, 1)
    marks = (rwt > 0) & (ly == rwt // 2) & (lx >= rwl) & dash_x
    marks |= (rwl > 0) & (lx == rwl // 2) & (ly >= rwt) & dash_y
    paint(marks, None, _MARKING, 0.04, None)
    del marks

    # parking lots with two rows of parked cars
    lot = (P(c["type"], np.int8) == T_PARKING) & ~road
    paint(lot, IMP, _CONCRETE, 0.06, 0.0)
    ux0, uy0 = P(c["ux0"]), P(c["uy0"])
    rel = lx - ux0 - 1
    slot = rel // 6
    in_slot = (rel >= 0) & (rel % 6 < 4) & (slot < (CELL - 4 - ux0) // 6)
    row1 = (ly >= CELL - 14) & (ly < CELL - 5)
    in_row = ((ly >= uy0 + 2) & (ly < uy0 + 11)) | row1
    bit = np.clip(slot + 10 * row1, 0, 19).astype(np.uint64)
    parked = lot & in_row & in_slot
    parked &= ((P(c["lot_occupied"], np.uint64) >> bit) & np.uint64(1)) == np.uint64(0)
    car_colour = np.full(shape, -1, dtype=np.int8)
    colour_bits = (P(c["lot_colours"], np.uint64) >> (bit * np.uint64(3))) & np.uint64(7)
    np.copyto(car_colour, colour_bits, where=parked, casting="unsafe")
    del rel, slot, in_slot, row1, in_row, bit, parked, lot, colour_bits

    # terraces around buildings, clutter patches, cars on roads, trees
    paint(rect(c["tx0"], c["tx1"], c["ty0"], c["ty1"]), IMP, _PAVING, 0.06, 0.1)
    for p in c["patches"]:  # type: ignore[union-attr]
        colour = _CLUTTER[p["colour"]]
        paint(rect(p["x0"], p["x1"], p["y0"], p["y1"]), CLUT,
              [P(colour[..., b], f32) for b in range(4)], 0.2, P(p["z"], f32))
    for car in c["cars"]:  # type: ignore[union-attr]
        np.copyto(car_colour, P(car["colour"], np.int8),
                  where=rect(car["x0"], car["x1"], car["y0"], car["y1"]))
    cars = car_colour >= 0
    idx = np.maximum(car_colour, 0)
    paint(cars, CAR, [_CARS[b][idx] for b in range(4)], 0.05, 1.5)
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
        paint(inside, TREE, [f32(_TREE_RGBN[b]) * shade for b in range(4)], 0.24,
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
    np.copyto(labels, np.uint8(BLD), where=b1)
    col1 = col.copy()
    np.copyto(col1, roof_col, where=b1)
    amp1 = amp.copy()
    np.copyto(amp1, f32(0.05), where=b1)
    dark = np.where(shadow & has1, f32(0.55), f32(1.0))

    # date t2: demolished footprints become bare soil or fresh grass, new buildings appear
    gone = b1 & ~b2
    demol_class = P(c["demol_class"], np.uint8)
    labels2 = lab
    np.copyto(labels2, np.uint8(BLD), where=b2)
    np.copyto(labels2, demol_class, where=gone)
    paint(gone & (demol_class == CLUT), None, _BARE, 0.22, None)
    paint(gone & (demol_class == LOW), None, _FRESH_GRASS, 0.2, None)
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

    hw = (n * CELL, m * CELL)
    img1 = col1.reshape((4,) + hw)
    img1 *= tex1.reshape(hw)
    img1 += _noise(stream_key(seed, "noise-t1"), ys, xs) * f32(_NOISE_SIGMA)
    img2 = col.reshape((4,) + hw)
    img2 *= tex.reshape(hw)
    gain, offset = _t2_radiometry(seed)
    img2 *= gain[:, None, None]
    img2 += offset[:, None, None]
    labels2 = labels2.reshape(hw)
    veg = (labels2 == LOW) | (labels2 == TREE)
    img2[0] += veg * f32(6.0)           # late-season vegetation: redder, less NIR
    img2[3] -= veg * f32(10.0)
    img2 += _noise(stream_key(seed, "noise-t2"), ys, xs) * f32(_NOISE_SIGMA)
    return {"t1": _to_u8(img1), "t2": _to_u8(img2), "dsm": dsm,
            "labels": labels.reshape(hw), "labels_t2": labels2, "change": change.reshape(hw)}

