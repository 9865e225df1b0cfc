"""Where the model is least sure: a ranked list of square places from an uncertainty raster
(``predict --uncertainty``), for the analyst to check first.

The raster (or the part of it inside ``bounds``, e.g. the map extent) is cut into cells of
``cell_px`` pixels; a cell's score is its mean uncertainty over valid pixels.  Large extents are
read decimated (at most ``MAX_READ`` pixels a side), so ranking a whole scene stays cheap.

The least-certain cells of a weak model cluster (along one kind of boundary, in one kind of
land cover), and ten places side by side teach a model little more than one.  So the list is
picked greedily for variety: a place keeps its neighbours within ``spread`` cells off the list
(they come back only when nothing else is left), and with the model's class raster
(``prediction``) each further place of a cell's majority class counts for ``CLASS_REPEAT``
times less, so the list mixes the predicted classes.

Places already checked stay off the list: a cell whose centre lies in a reviewed place, or
that the analyst's corrections cover for at least ``CORRECTED_SHARE`` of its area.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from affine import Affine
from rasterio.features import rasterize
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds
from rasterio.windows import transform as window_transform

from ..inference.uncertainty import NODATA, SCALE
from ..io.rasters import CLASS_NODATA, bounds_window, open_raster
from ..jobs import InputError
from .cells import cell_blocks, read_on_grid
from .strata import allot, appearance_strata

Bounds = Tuple[float, float, float, float]  # left, bottom, right, top in the raster's CRS
MAX_READ = 2048
MIN_VALID_SHARE = 0.5  # a cell mostly outside the data is not a place to check
CLASS_REPEAT = 0.7  # a cell's score times this for each place already listed of its class
CORRECTED_SHARE = 0.25  # a cell this much covered by corrections was checked: not listed
PLACES = 10  # places a list holds
PLACE_PX = 64  # a place is a square of this many pixels of the uncertainty raster


@dataclass
class Place:
    """A place to check: its bounds (raster CRS), mean uncertainty (0..1) and pixel window."""

    rank: int
    bounds: Bounds
    uncertainty: float
    window: Tuple[int, int, int, int]  # col, row, width, height on the raster grid


def unsure_places(uncertainty: str | Path, bounds: Optional[Bounds] = None,
                  count: int = PLACES, cell_px: int = PLACE_PX, exclude: Sequence[Bounds] = (),
                  spread: int = 1, prediction: Optional[str | Path] = None,
                  explore: float = 0.0, image: Optional[str | Path] = None,
                  corrected: Sequence[Mapping[str, Any]] = ()) -> List[Place]:
    """``count`` cells of high mean uncertainty, most unsure first, kept varied: no two within
    ``spread`` cells of each other while others are left (0: the plain ranking) and, with the
    model's class raster ``prediction`` (same grid), a mix of its classes.  Cells whose centre
    lies in one of ``exclude`` (places already reviewed), or that the ``corrected`` polygons
    (GeoJSON geometries in the raster's CRS) cover for ``CORRECTED_SHARE`` of their area, are
    left out.  ``explore`` (0..1): the
    share of the places picked instead as far as possible from every place reviewed or listed
    (a confidently wrong model is sure where it is wrong: uncertainty alone never sends the
    analyst there).  With the ``image`` the uncertainty was predicted from, the places are
    shared among groups of cells that look alike in proportion to their area (``strata``),
    each group's most unsure first: every kind of place the scene holds gets checked, also
    where the model is sure."""
    if not 0 <= explore <= 1:
        raise InputError(f"explore is a share of the places, 0 to 1 (got {explore})")
    if count < 1 or cell_px < 1 or spread < 0:
        raise InputError(f"count and cell size must be at least 1 and the spread at least 0 "
                         f"(got {count}, {cell_px}, {spread})")
    with open_raster(uncertainty) as ds:
        read = _read_window(ds, bounds)
        if read is None:
            return []
        (col, row, w, h), step = read
        shape = (math.ceil(h / step), math.ceil(w / step))
        data = ds.read(1, window=Window(col, row, w, h), out_shape=shape)
        transform, grid = ds.transform, (ds.width, ds.height, ds.transform)
    cell = max(1, cell_px // step)
    mean = _cell_means(data, cell)
    classes = _cell_classes(prediction, grid, (col, row, w, h), shape, cell) \
        if prediction is not None else None
    strata = appearance_strata(image, grid, (col, row, w, h), shape, cell, mean >= 0) \
        if image is not None else None

    def place(r: int, c: int) -> Tuple[Bounds, Tuple[int, int, int, int]]:
        x, y = col + c * cell * step, row + r * cell * step
        win = (x, y, min(cell * step, col + w - x), min(cell * step, row + h - y))
        return tuple(window_bounds(Window(*win), transform)), win

    seen = np.zeros(mean.shape, bool)
    if corrected:
        covered = _cell_cover(corrected, transform, (col, row, w, h), shape, cell)
        checked = (mean >= 0) & (covered >= CORRECTED_SHARE)
        mean[checked], seen[checked] = -1.0, True
    for r, c in zip(*np.nonzero(mean >= 0)) if exclude else ():  # reviewed: not listed
        (left, bottom, right, top), _ = place(r, c)
        cx, cy = (left + right) / 2, (bottom + top) / 2
        if any(e[0] <= cx <= e[2] and e[1] <= cy <= e[3] for e in exclude):
            mean[r, c], seen[r, c] = -1.0, True
    places: List[Place] = []
    for r, c in _pick(mean, classes, spread, count, seen, explore, strata):
        box, win = place(r, c)
        places.append(Place(len(places) + 1, box, float(mean[r, c]) / SCALE, win))
    return places


def _read_window(ds, bounds: Optional[Bounds]):
    """The pixel window (col, row, w, h) of ``bounds`` on ``ds`` and the decimation step; None
    when they do not meet."""
    win = Window(0, 0, ds.width, ds.height) if bounds is None else bounds_window(ds, bounds)
    if win is None:
        return None
    col, row, w, h = int(win.col_off), int(win.row_off), int(win.width), int(win.height)
    return (col, row, w, h), max(1, math.ceil(max(w, h) / MAX_READ))


def _cell_means(data: np.ndarray, cell: int) -> np.ndarray:
    """Each cell's mean uncertainty (0..SCALE); -1 where the cell is mostly nodata."""
    blocks = cell_blocks(data, cell, NODATA)
    valid = blocks != NODATA
    n = valid.sum(-1)
    mean = np.where(n > 0, (blocks * valid).sum(-1) / np.maximum(n, 1), -1.0)
    mean[n < MIN_VALID_SHARE * cell * cell] = -1.0
    return mean


def _cell_cover(polygons: Sequence[Mapping[str, Any]], transform, window, shape,
                cell: int) -> np.ndarray:
    """The share of each cell the ``polygons`` cover, on the grid read at ``shape``."""
    col, row, w, h = window
    grid = window_transform(Window(col, row, w, h), transform) * Affine.scale(
        w / shape[1], h / shape[0])
    burned = rasterize(((p, 1) for p in polygons), out_shape=shape, transform=grid, fill=0,
                       dtype="uint8")
    inside = cell_blocks(np.ones(shape, np.uint8), cell, 0).sum(-1)  # a ragged edge's own area
    return cell_blocks(burned, cell, 0).sum(-1) / np.maximum(inside, 1)


def _cell_classes(prediction: str | Path, grid, window, shape, cell: int) -> np.ndarray:
    """Each cell's majority class in the class raster (read like the uncertainty raster)."""
    data = read_on_grid(prediction, grid, window, shape,
                        "give the class raster predicted with it")
    blocks = cell_blocks(data.astype(np.int64), cell, CLASS_NODATA)
    cells = np.broadcast_to(np.arange(blocks.shape[0] * blocks.shape[1]).reshape(
        blocks.shape[:2] + (1,)), blocks.shape)
    valid = blocks != CLASS_NODATA
    codes, counts = np.unique(cells[valid] * 256 + blocks[valid], return_counts=True)
    order = np.lexsort((counts, codes // 256))  # by cell, then count: each cell's last wins
    majority = np.full(blocks.shape[0] * blocks.shape[1], -1, np.int64)
    ranked_cells = codes[order] // 256
    last = np.r_[ranked_cells[1:] != ranked_cells[:-1], True]
    majority[ranked_cells[last]] = (codes[order] % 256)[last]
    return majority.reshape(blocks.shape[:2])


def _pick(mean: np.ndarray, classes: Optional[np.ndarray], spread: int, limit: int,
          seen: np.ndarray, explore: float, strata: Optional[np.ndarray] = None):
    """Cells (row, col) in the order they join the list, at most ``limit``; of every place,
    ``explore`` of one is the valid cell farthest from the ``seen`` (reviewed) and listed
    cells; with ``strata`` the others come from the group owed the next place."""
    rows, cols = np.indices(mean.shape)
    seen = seen.copy()
    explored = 0.0
    score = mean.astype(np.float64).copy()
    score[mean < 0] = -np.inf
    near = np.zeros(mean.shape, bool)  # within ``spread`` of a listed cell: held back
    listed: dict = {}
    picked = 0
    while picked < limit:
        weight = np.ones_like(score)
        if classes is not None:
            for value, n in listed.items():
                weight[classes == value] = CLASS_REPEAT ** n
        exploring = explored + explore >= 1 and np.isfinite(score).any()
        if exploring:
            far = _distance(seen, rows, cols)
            ranked = np.where(np.isfinite(score), far + score / (SCALE + 1), -np.inf)
        else:
            ranked = np.where(near, -np.inf, score * weight)
            if strata is not None:
                inside = strata == allot(strata, seen, np.isfinite(score))
                ranked = np.where(inside, ranked if np.isfinite(ranked[inside]).any()
                                  else score * weight, -np.inf)
        if not np.isfinite(ranked).any():
            if not near.any() or not np.isfinite(score).any():
                return
            near[:] = False  # only neighbours are left: they come back, still ranked
            continue
        r, c = np.unravel_index(int(np.argmax(ranked)), ranked.shape)
        yield int(r), int(c)
        picked += 1
        explored += explore - 1 if exploring else explore
        score[r, c], seen[r, c] = -np.inf, True
        near[max(0, r - spread):r + spread + 1, max(0, c - spread):c + spread + 1] = True
        if classes is not None:
            listed[classes[r, c]] = listed.get(classes[r, c], 0) + 1


def _distance(seen: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Each cell's distance (cells) to the nearest seen cell; large where none is seen."""
    if not seen.any():
        return np.full(seen.shape, float(max(seen.shape)))
    r, c = np.nonzero(seen)
    d = np.hypot(rows[..., None] - r, cols[..., None] - c)
    return d.min(-1)
