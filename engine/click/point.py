"""Click-to-segment: the connected region of one class under a map point, as a polygon.

A ``window``×``window`` block around the point is copied into an in-memory GeoTIFF and run
through the same streaming pipeline as whole-raster inference (``open_sources`` →
``run_sliding_window`` → stitcher), so a click gives exactly the probabilities ``predict`` would
give there (up to the window's own edges).  The 4-connected region of the class under the point
is polygonised with ``rasterio.features.shapes``; its confidence is the mean probability of that
class over the region.

The window origin is snapped to a grid of half a window (the point stays at least a quarter
window from the edge, unless the raster edge is closer), so clicks near an earlier one hit the
same window and a :class:`PredictionCache` can hand back its predictions without running the
network again.
"""
from __future__ import annotations

import contextlib
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Hashable, List, Optional, Tuple

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import MaskFlags
from rasterio.features import rasterize, shapes
from rasterio.io import MemoryFile
from rasterio.windows import Window
from shapely.affinity import affine_transform
from shapely.geometry import Point, shape
from shapely.geometry.polygon import orient

from ..compute import backend as xp
from ..compute.devices import resolve_device
from ..inference.pipeline import (open_sources, prepare_network, resolve_tiling, run_sliding_window,
                        softmax_forward)
from ..io.radiometry import image_statistics, needs_statistics
from ..io.rasters import WindowReader, open_raster, resolve_bands
from ..jobs import CancelledFn, InputError, Job, ModelFileError, ProgressFn
from ..formats.card import LoadedModel
from ..formats.modelfile import load_model
from ..inference.tiling import with_margin
from ..inference.tiling import Block
from ..inference.views import ViewOptions, make_view
from ..io.area import AreaMeter
from .recent import Recent

BATCH_SIZE = 8
MIN_WINDOW = 16


@dataclass
class WindowPrediction:
    """Stitched class probabilities (C×h×w) and validity (h×w) of one window."""

    probabilities: np.ndarray
    valid: np.ndarray


class PredictionCache:
    """Recent window predictions (least recently used dropped first) and the last loaded model.

    Window keys are ``(model file, input file, window column, row, width, height)``, where a
    file is its path and modification time, so a retrained model or an edited raster is never
    answered from the cache.  Safe to share between threads (e.g. background tasks of a map tool).
    """

    def __init__(self, size: int = 8) -> None:
        self._windows: "Recent[WindowPrediction]" = Recent(size)
        self._model: Optional[Tuple[Hashable, LoadedModel]] = None
        self._lock = threading.Lock()

    def model(self, path: str | Path, device: Any) -> LoadedModel:
        """The model at ``path`` on ``device``, loaded once for consecutive clicks."""
        key = (file_stamp(path), str(device))
        with self._lock:
            if self._model is None or self._model[0] != key:
                self._model = (key, load_model(path, device))
            return self._model[1]

    def get(self, key: Hashable) -> Optional[WindowPrediction]:
        """The cached prediction for ``key`` (marked as recently used), or None."""
        return self._windows.get(key)

    def put(self, key: Hashable, value: WindowPrediction) -> None:
        """Remember ``value``; forget the least recently used window beyond ``size``."""
        self._windows.put(key, value)

    def __len__(self) -> int:
        return len(self._windows)


def file_stamp(path: str | Path | None) -> Tuple[str, Optional[int]]:
    """``(path, modification time in ns)``; the time is None for /vsi paths and missing files."""
    try:
        return str(path), os.stat(path).st_mtime_ns
    except (OSError, TypeError):
        return str(path), None


def snapped_window(col: int, row: int, window: int, width: int, height: int) -> Window:
    """The window around pixel (col, row), its origin snapped to multiples of ``window // 2``
    and clipped to the raster."""
    step = max(1, window // 2)

    def start(centre: int, size: int) -> int:
        origin = math.floor((centre - window / 2) / step + 0.5) * step
        return int(min(max(origin, 0), max(size - window, 0)))

    return Window(start(col, width), start(row, height), min(window, width), min(window, height))


def segment_at(model: str | Path | LoadedModel, input: str | Path, x: float, y: float,
               window: int = 512, device: str = "auto", progress: Optional[ProgressFn] = None,
               cancelled: Optional[CancelledFn] = None,
               cache: Optional[PredictionCache] = None, gsd: str = "auto",
               input_gsd: Optional[float] = None) -> Dict[str, Any]:
    """Segment around map point (x, y) of ``input`` (in its CRS) and return the region under it.

    ``window`` is in input pixels; ``gsd``/``input_gsd`` work as in
    :func:`engine.inference.pipeline.predict` (the network reads the window at the model's GSD).

    Returns ``geometry`` (shapely Polygon in the raster CRS), ``class_value``, ``class_name``,
    ``area_m2``, ``confidence`` (mean class probability over the region), ``crs_wkt``,
    ``window`` (col, row, width, height), ``truncated`` (the region reaches a window edge inside
    the raster: a larger window would make it bigger) and ``cached``.
    """
    job = Job(progress, cancelled)
    if int(window) < MIN_WINDOW:
        raise InputError(f"window must be at least {MIN_WINDOW} pixels (got {window})")
    dev = resolve_device(device)
    if isinstance(model, LoadedModel):
        lm = model
    else:
        lm = cache.model(model, dev) if cache is not None else load_model(model, dev)
    if lm.card["task"] != "segmentation":
        raise ModelFileError(f"{lm.path or 'the model'} is a {lm.card['task']} model; click-to-"
                             f"segment needs a segmentation model")
    with open_raster(input) as ds:
        fcol, frow = ~ds.transform * (x, y)
        if not (0 <= fcol < ds.width and 0 <= frow < ds.height):
            l, b, r, t = ds.bounds
            raise InputError(f"the point ({x:.2f}, {y:.2f}) is outside {Path(input).name} "
                             f"(x {l:.2f}..{r:.2f}, y {b:.2f}..{t:.2f}); click inside the raster")
        col, row = int(fcol), int(frow)
        win = snapped_window(col, row, int(window), ds.width, ds.height)
        key = (file_stamp(lm.path), file_stamp(input), int(win.col_off), int(win.row_off),
               int(win.width), int(win.height), str(gsd), input_gsd)
        pred = cache.get(key) if cache is not None else None
        cached = pred is not None
        if pred is None:
            pred = _predict_window(lm, ds, win, dev, job, ViewOptions(gsd, input_gsd))
            if cache is not None:
                cache.put(key, pred)
        transform = ds.window_transform(win)
        crs = ds.crs
        edges = (win.col_off > 0, win.row_off > 0, win.col_off + win.width < ds.width,
                 win.row_off + win.height < ds.height)
    result = _region(lm.card, pred, col - int(win.col_off), row - int(win.row_off), transform,
                     crs, edges)
    job.report(1.0, "segment_point: done")
    return {**result, "crs_wkt": crs.to_wkt() if crs else None,
            "window": (int(win.col_off), int(win.row_off), int(win.width), int(win.height)),
            "cached": cached}


def _predict_window(lm: LoadedModel, ds: rasterio.io.DatasetReader, win: Window,
                    device: Any, job: Job, options: ViewOptions) -> WindowPrediction:
    """Run the streaming pipeline on ``win`` of ``ds`` (copied into an in-memory GeoTIFF).

    The GSD plan and any per-image statistics come from the whole raster, so a click sees the
    same normalisation as ``predict`` on the whole image.
    """
    card = lm.card
    tile, overlap = resolve_tiling(card, None, None)
    view = make_view(ds, card, tile, overlap, options)
    group = card["inputs"]["image"]
    stats = (image_statistics(WindowReader(ds, resolve_bands(ds, group["bands"])))
             if needs_statistics(group) else None)
    h, w = int(win.height), int(win.width)
    profile = {"driver": "GTiff", "width": w, "height": h, "count": ds.count,
               "dtype": ds.dtypes[0], "crs": ds.crs, "transform": ds.window_transform(win),
               "nodata": ds.nodata}
    channels = len(card["classes"])
    probs = np.zeros((channels, h, w), dtype=np.float32)
    valid = np.zeros((h, w), dtype=bool)

    def convert(block: Block) -> List[np.ndarray]:
        return [xp.to_numpy(block.scores), xp.to_numpy(block.valid[None])]

    def on_rows(y: int, rows: List[np.ndarray]) -> None:
        probs[:, y:y + rows[0].shape[1]] = rows[0]
        valid[y:y + rows[1].shape[1]] = rows[1][0]

    with MemoryFile() as mem, contextlib.ExitStack() as stack:
        with mem.open(**profile) as dst:
            dst.write(ds.read(window=win))
            dst.colorinterp = ds.colorinterp  # keeps an alpha band a mask, as in the source
            flags = ds.mask_flag_enums[0]
            if MaskFlags.per_dataset in flags and MaskFlags.alpha not in flags:
                dst.write_mask(ds.dataset_mask(window=win))  # an internal/.msk mask
        image = stack.enter_context(mem.open())
        sources = open_sources(card, image, None, None, stack, view, stats)
        net = prepare_network(lm, device)
        grid = with_margin(view.grid(w, h), card, view.tile)
        run_sliding_window(view.wrap(softmax_forward(net)), sources, grid, channels,
                           device, BATCH_SIZE, convert, on_rows, job, label="segment_point: window")
    return WindowPrediction(probs, valid)


def _region(card: Dict[str, Any], pred: WindowPrediction, col: int, row: int,
            transform: Affine, crs: Any, edges: Tuple[bool, bool, bool, bool]) -> Dict[str, Any]:
    """The polygon, class and confidence of the 4-connected class region around (col, row)."""
    if not pred.valid[row, col]:
        raise InputError("there is no data under the point (nodata or masked pixel); click on "
                         "the image")
    index = int(pred.probabilities[:, row, col].argmax())
    same = (pred.probabilities.argmax(0) == index) & pred.valid
    centre = Point(col + 0.5, row + 0.5)
    parts = (shape(g) for g, _ in shapes(same.astype(np.uint8), mask=same, connectivity=4))
    pixel_geom = next(p for p in parts if p.contains(centre))
    region = rasterize([(pixel_geom, 1)], out_shape=same.shape, fill=0, dtype="uint8") > 0
    h, w = same.shape
    left, top, right, bottom = edges
    truncated = bool((left and region[:, 0].any()) or (top and region[0].any())
                     or (right and region[:, w - 1].any()) or (bottom and region[h - 1].any()))
    matrix = [transform.a, transform.b, transform.d, transform.e, transform.xoff, transform.yoff]
    geom = orient(affine_transform(pixel_geom, matrix), 1.0)
    area = AreaMeter(crs).exact(pixel_geom, geom, abs(transform.determinant))
    cls = card["classes"][index]
    return {"geometry": geom, "class_value": int(cls["value"]), "class_name": str(cls["name"]),
            "area_m2": float(area),
            "confidence": float(pred.probabilities[index][region].mean()),
            "truncated": truncated}
