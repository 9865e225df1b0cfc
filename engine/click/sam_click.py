"""Zero-shot click-to-segment with Segment Anything: the object under a map point, as a polygon.

Beside :mod:`engine.click.point` (the class region a trained model predicts), this needs no training:
a window of ``window`` pixels around the click (origin snapped to half-window steps, as in
:func:`engine.click.point.snapped_window`, so nearby clicks share it) is encoded once by SAM's image
encoder and cached; every click, background click or box in that window only runs the prompt
encoder and mask decoder.  Non-8-bit imagery is stretched to 0..255 by each band's 2–98 %
range over the window.  The mask part containing the click (else the largest) is polygonised on
the window's grid.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Dict, Hashable, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from rasterio import Affine
from rasterio.features import shapes
from rasterio.windows import transform as window_transform
from scipy import ndimage
from shapely.geometry import Polygon

from ..compute.devices import resolve_device
from ..io.rasters import data_band_indexes, open_raster
from ..jobs import CancelledFn, InputError, Job, ProgressFn
from ..models.sam import Sam
from ..models.sam.predictor import decode, encode
from .point import file_stamp, snapped_window
from .recent import Recent
from .sam_onnx import OnnxSamDecoder, onnx_decoder
from ..io.area import AreaMeter

MIN_WINDOW = 64
MIN_HOLE = 64        # pixels: smaller holes in a mask are filled (noise, not object structure)
SAM_CLASS = "object (SAM)"
# A preview (``preview`` > 1) decodes with int8 up-scaling (:mod:`.sam_int8`): its masks agree
# with fp32 at IoU ≥ 0.98 and it is cheaper; the click that fixes the object decodes in fp32.
PREVIEW_PRECISION = "int8"


class RasterInfo(NamedTuple):
    """What a click needs of a raster besides the pixels of a window it has not encoded yet."""

    transform: Affine
    width: int
    height: int
    crs: Any
    bands: Tuple[int, ...]         # the data bands (an alpha band is a mask)


class SamSession:
    """The loaded SAM network (reloaded only when the weights file changes), recent window
    embeddings, the rasters' geometry and the last preview; share one between clicks (and
    threads) of a map tool."""

    def __init__(self, windows: int = 8) -> None:
        self.embeddings: Recent[Any] = Recent(windows)
        self.rasters: "Recent[RasterInfo]" = Recent(windows)
        self.last_preview: Optional[Tuple[Hashable, Dict[str, Any]]] = None
        self._model: Optional[Tuple[Hashable, Sam]] = None
        self._decoder: Optional[Tuple[Hashable, Optional[OnnxSamDecoder]]] = None
        self._lock = threading.Lock()

    def raster(self, path: str | Path) -> RasterInfo:
        """The geometry of ``path``, read once per version of the file: a hover over an encoded
        window opens nothing (opening a GeoTIFF costs more than the rest of a preview)."""
        key = file_stamp(path)
        info = self.rasters.get(key)
        if info is None:
            with open_raster(path) as ds:
                info = RasterInfo(ds.transform, ds.width, ds.height, ds.crs,
                                  tuple(data_band_indexes(ds)))
            self.rasters.put(key, info)
        return info

    def model(self, weights: str | Path, device: torch.device) -> Sam:
        from ..models.sam.checkpoint import load_sam
        key = (file_stamp(weights), str(device))
        with self._lock:
            if self._model is None or self._model[0] != key:
                self._model = (key, load_sam(weights).to(device))
            return self._model[1]

    def decoder(self, sam: Sam, device: torch.device) -> Optional[OnnxSamDecoder]:
        """The onnxruntime prompt encoder + mask decoder of ``sam`` (made once per network), or
        None where decoding stays in torch (a GPU, no onnxruntime)."""
        key = (id(sam), str(device))
        with self._lock:
            if self._decoder is None or self._decoder[0] != key:
                self._decoder = (key, onnx_decoder(sam, device))
            return self._decoder[1]


def to_rgb8(pixels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """bands×h×w → 3×h×w uint8 (8-bit data as they are, others by the 2–98 % range; fewer bands
    repeated; invalid pixels 0)."""
    rgb = pixels[:3] if pixels.shape[0] >= 3 else np.repeat(pixels[:1], 3, axis=0)
    if rgb.dtype != np.uint8:
        out = np.zeros(rgb.shape, np.uint8)
        for i, band in enumerate(rgb.astype(np.float64)):
            sample = band[valid] if valid.any() else band.ravel()
            lo, hi = np.percentile(sample, (2, 98)) if sample.size else (0.0, 1.0)
            out[i] = np.round(np.clip((band - lo) / max(hi - lo, 1e-12), 0, 1) * 255)
        rgb = out
    return np.where(valid[None], rgb, 0).astype(np.uint8)


def sam_segment_at(input: str | Path, x: float, y: float, weights: str | Path, *,
                   window: int = 1024, background: Sequence[Tuple[float, float]] = (),
                   box: Optional[Tuple[float, float, float, float]] = None,
                   multimask: bool = True, bands: Optional[Sequence[int]] = None,
                   device: str = "auto", session: Optional[SamSession] = None,
                   cached_only: bool = False, preview: int = 1,
                   progress: Optional[ProgressFn] = None,
                   cancelled: Optional[CancelledFn] = None) -> Optional[Dict[str, Any]]:
    """Segment the object at map point (x, y) of ``input`` (its CRS) with SAM.

    ``background``: map points that are not the object; ``box``: (xmin, ymin, xmax, ymax) around
    it.  Returns ``geometry`` (shapely Polygon, raster CRS), ``score`` (SAM's predicted IoU),
    ``scores`` (of the candidates), ``area_m2``, ``crs_wkt``, ``window`` (col, row, w, h),
    ``truncated`` (the mask touches a window edge inside the raster), ``cached`` (the window
    embedding was reused) and, for the same layer as :func:`engine.click.point.segment_at`,
    ``class_name`` "object (SAM)", ``class_value`` 0 and ``confidence`` = ``score``.
    ``cached_only`` (the hover preview): None instead of encoding a window not yet encoded;
    ``preview`` > 1 makes the mask and its polygon that many times coarser (a cheap outline),
    decoded with int8 up-scaling and reused while the point stays on one of its pixels.
    Decoding runs through onnxruntime on the CPU when it is installed (:mod:`.sam_onnx`).
    """
    job = Job(progress, cancelled)
    if int(window) < MIN_WINDOW:
        raise InputError(f"window must be at least {MIN_WINDOW} pixels (got {window})")
    dev = resolve_device(device)
    session = session or SamSession(1)
    sam = session.model(weights, dev)
    info = session.raster(input)
    fcol, frow = ~info.transform * (x, y)
    if not (0 <= fcol < info.width and 0 <= frow < info.height):
        raise InputError(f"the point ({x:.2f}, {y:.2f}) is outside {Path(input).name}; click "
                         f"inside the raster")
    win = snapped_window(int(fcol), int(frow), int(window), info.width, info.height)
    use = list(bands) if bands else (list(info.bands[:3]) or [1])
    key = (file_stamp(weights), file_stamp(input), tuple(use), int(win.col_off),
           int(win.row_off), int(win.width), int(win.height), str(dev))
    hit = session.embeddings.get(key)
    cached = hit is not None
    if hit is None and cached_only:
        return None
    if hit is None:
        job.report(0.1, "sam: encoding the window")
        with open_raster(input) as ds:
            valid = ds.dataset_mask(window=win) > 0
            hit = (encode(sam, to_rgb8(ds.read(use, window=win), valid), dev), valid)
        session.embeddings.put(key, hit)
    emb, valid = hit
    job.check()
    transform = window_transform(win, info.transform)
    to_win = ~transform
    mask_shape = (-(-int(win.height) // preview), -(-int(win.width) // preview))
    if preview > 1:
        transform = transform * Affine.scale(win.width / mask_shape[1],
                                             win.height / mask_shape[0])
    click = to_win * (x, y)
    click_px = (click[0] * mask_shape[1] / win.width, click[1] * mask_shape[0] / win.height)
    points = np.array([click] + [to_win * p for p in background], np.float32)
    labels = np.array([1] + [0] * len(background), np.int64)
    box_px = None
    if box is not None:
        (c0, r0), (c1, r1) = to_win * (box[0], box[3]), to_win * (box[2], box[1])
        box_px = (min(c0, c1), min(r0, r1), max(c0, c1), max(r0, r1))
    # A preview is only an outline: while the cursor stays on one of its pixels it is unchanged.
    request = (key, int(click_px[0]), int(click_px[1]), points[1:].round().tobytes(),
               box_px and tuple(round(v) for v in box_px), multimask, preview)
    last = session.last_preview
    if preview > 1 and last is not None and last[0] == request:
        return dict(last[1], cached=True)
    decoder = session.decoder(sam, dev)
    result = decoder.decode(emb, points, labels, box_px, multimask, mask_shape,
                            PREVIEW_PRECISION if preview > 1 else "fp32") \
        if decoder is not None else decode(sam, emb, points, labels, box_px, multimask,
                                           mask_shape)
    mask = result.mask & valid[::preview, ::preview]
    if not mask.any():
        raise InputError("SAM found no object at the point; click inside the object, or draw a "
                         "box around it")
    geom_px = _part(mask, click_px)
    h, w = mask.shape
    x0, y0, x1, y1 = geom_px.bounds
    truncated = bool((win.col_off > 0 and x0 <= 0) or (win.row_off > 0 and y0 <= 0)
                     or (win.col_off + win.width < info.width and x1 >= w)
                     or (win.row_off + win.height < info.height and y1 >= h))
    geom = _to_map(geom_px, transform)
    out = {"geometry": geom, "score": result.score, "scores": list(result.scores),
           "class_name": SAM_CLASS, "class_value": 0, "confidence": result.score,
           "area_m2": float(AreaMeter(info.crs).exact(geom_px, geom,
                                                     abs(transform.determinant))),
           "crs_wkt": info.crs.to_wkt() if info.crs else None,
           "window": (int(win.col_off), int(win.row_off), int(win.width), int(win.height)),
           "truncated": truncated, "cached": cached}
    if preview > 1:
        session.last_preview = (request, out)
    job.report(1.0, "sam: done")
    return out


def _part(mask: np.ndarray, click: Tuple[float, float], min_hole: int = MIN_HOLE) -> Polygon:
    """The polygon of the 4-connected part of ``mask`` under the click, else of its largest part
    (pixel units), holes under ``min_hole`` pixels filled (as SAM's small-region clean-up).
    Only that part is traced, within its bounding box (a fragmented mask has thousands)."""
    labels, _ = ndimage.label(mask)
    col = min(max(int(click[0]), 0), mask.shape[1] - 1)
    row = min(max(int(click[1]), 0), mask.shape[0] - 1)
    pick = labels[row, col] or int(np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    rows, cols = ndimage.find_objects(labels, max_label=pick)[pick - 1]
    part = labels[rows, cols] == pick
    holes, n = ndimage.label(ndimage.binary_fill_holes(part) & ~part)
    if n:
        small = np.flatnonzero(np.bincount(holes.ravel())[1:] < min_hole) + 1
        part |= np.isin(holes, small)
    rings = next(g["coordinates"] for g, _ in
                 shapes(part.astype(np.uint8), mask=part, connectivity=4))
    offset = np.array([cols.start, rows.start], np.float64)
    rings = [np.asarray(r, np.float64) + offset for r in rings]
    return Polygon(rings[0], rings[1:])


def _to_map(polygon: Polygon, transform: Affine) -> Polygon:
    """``polygon`` (pixel units) in map coordinates, exterior counter-clockwise and holes
    clockwise (shapely's ``orient(…, 1.0)``, without its per-vertex Python loop)."""
    m = np.array([[transform.a, transform.b], [transform.d, transform.e]])
    shift = np.array([transform.c, transform.f])
    out = []
    for k, ring in enumerate([polygon.exterior, *polygon.interiors]):
        xy = np.asarray(ring.coords) @ m.T + shift
        area2 = np.dot(xy[:-1, 0], xy[1:, 1]) - np.dot(xy[1:, 0], xy[:-1, 1])
        out.append(xy if (area2 >= 0) == (k == 0) else xy[::-1])
    return Polygon(out[0], out[1:])
