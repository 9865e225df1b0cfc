"""Where the model is least sure: a ranked list of square places from an uncertainty raster
(``predict --uncertainty``), for the analyst to check first.

The raster (or the part of it inside ``bounds``, e.g. the map extent) is cut into cells of
``cell_px`` pixels; a cell's score is its mean uncertainty over valid pixels.  Large extents are
read decimated (at most ``MAX_READ`` pixels a side), so ranking a whole scene stays cheap.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
from rasterio.windows import Window, from_bounds
from rasterio.windows import bounds as window_bounds

from ..inference.uncertainty import NODATA, SCALE
from ..io.rasters import open_raster
from ..jobs import InputError

Bounds = Tuple[float, float, float, float]  # left, bottom, right, top in the raster's CRS
MAX_READ = 2048
MIN_VALID_SHARE = 0.5  # a cell mostly outside the data is not a place to check


@dataclass
class Place:
    """A place to check: its bounds (raster CRS), mean uncertainty (0..1) and pixel window."""

    rank: int
    bounds: Bounds
    uncertainty: float
    window: Tuple[int, int, int, int]  # col, row, width, height on the raster grid


def unsure_places(uncertainty: str | Path, bounds: Optional[Bounds] = None, count: int = 10,
                  cell_px: int = 64, exclude: Sequence[Bounds] = ()) -> List[Place]:
    """The ``count`` cells with the highest mean uncertainty, most unsure first; cells whose
    centre lies in one of ``exclude`` (places already reviewed) are left out."""
    if count < 1 or cell_px < 1:
        raise InputError(f"count and cell size must be at least 1 (got {count}, {cell_px})")
    with open_raster(uncertainty) as ds:
        full = Window(0, 0, ds.width, ds.height)
        if bounds is None:
            win = full
        else:
            win = from_bounds(*bounds, transform=ds.transform).round_offsets().round_lengths()
            try:
                win = win.intersection(full)
            except Exception:  # rasterio raises WindowError when they do not meet
                return []
        col, row, w, h = int(win.col_off), int(win.row_off), int(win.width), int(win.height)
        if w < 1 or h < 1:
            return []
        step = max(1, math.ceil(max(w, h) / MAX_READ))
        data = ds.read(1, window=Window(col, row, w, h),
                       out_shape=(math.ceil(h / step), math.ceil(w / step)))
        transform = ds.transform
    cell = max(1, cell_px // step)
    rows, cols = math.ceil(data.shape[0] / cell), math.ceil(data.shape[1] / cell)
    padded = np.full((rows * cell, cols * cell), NODATA, np.uint8)
    padded[:data.shape[0], :data.shape[1]] = data
    blocks = padded.reshape(rows, cell, cols, cell).swapaxes(1, 2).reshape(rows, cols, -1)
    valid = blocks != NODATA
    n = valid.sum(-1)
    mean = np.where(n > 0, (blocks * valid).sum(-1) / np.maximum(n, 1), -1.0)
    mean[n < MIN_VALID_SHARE * cell * cell] = -1.0
    places: List[Place] = []
    for flat in np.argsort(mean, axis=None)[::-1]:
        if len(places) == count or mean.flat[flat] < 0:
            break
        r, c = divmod(int(flat), cols)
        x, y = col + c * cell * step, row + r * cell * step
        pw, ph = min(cell * step, col + w - x), min(cell * step, row + h - y)
        left, bottom, right, top = window_bounds(Window(x, y, pw, ph), transform)
        cx, cy = (left + right) / 2, (bottom + top) / 2
        if any(e[0] <= cx <= e[2] and e[1] <= cy <= e[3] for e in exclude):
            continue
        places.append(Place(len(places) + 1, (left, bottom, right, top),
                            float(mean.flat[flat]) / SCALE, (x, y, pw, ph)))
    return places
