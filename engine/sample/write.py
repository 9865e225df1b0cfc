"""Writing the sample scene to disk: ``make_sample``, its GeoTIFFs and their metadata.

Checks the arguments, opens the six outputs (CRS, 0.5 m grid, tiling, compression, band names,
colour tables, class tags) and streams the rendered scene into them window by window (256-row
strips, 2048-column chunks), so memory does not grow with the size.  Files appear only when
complete: a cancel or error leaves no file behind.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import Affine
from rasterio.windows import Window

from ..io.rasters import bounded_gdal_cache
from ..jobs import CancelledFn, InputError, Job, ProgressFn, atomic_output
from .layout import CLASSES
from .render import BANDS, render

GSD_M = 0.5
CRS = "EPSG:32633"
ORIGIN = (500000.0, 5000000.0)   # map coordinates of the top-left corner (seed-independent)
MIN_SIZE = 64
STRIP_ROWS = 256                 # rows rendered and written per step (a multiple of _TILE)
CHUNK_COLS = 2048                # columns rendered at once inside a strip (bounds memory)
OUTPUTS = ("t1", "t2", "dsm", "labels", "labels_t2", "change")

_TILE = 256
_LABEL_NODATA = 255              # the engine's class nodata value (never present here)


def _transform() -> Affine:
    """The scene's pixel → map transform (north up, top-left at ORIGIN)."""
    return Affine(GSD_M, 0.0, ORIGIN[0], 0.0, -GSD_M, ORIGIN[1])


def _profile(size: int, count: int, dtype: str, **extra: Any) -> Dict[str, Any]:
    """A tiled, deflate-compressed GeoTIFF profile of the scene's grid."""
    return {"driver": "GTiff", "width": size, "height": size, "count": count, "dtype": dtype,
            "crs": CRS, "transform": _transform(), "tiled": True, "blockxsize": _TILE,
            "blockysize": _TILE, "compress": "deflate", "BIGTIFF": "IF_SAFER", **extra}


def _class_colormap() -> Dict[int, Tuple[int, int, int, int]]:
    """The labels' colour table: the class colours, nodata transparent."""
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
    """Open the six outputs at ``tmps`` with their metadata; ``stack`` closes them."""
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
    """Raise :class:`~engine.jobs.InputError` for a size or seed make_sample cannot use."""
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
                    for name, data in render(seed, y0, y1, x0, x1).items():
                        if data.ndim == 2:
                            dsts[name].write(data, 1, window=window)
                        else:
                            dsts[name].write(data, window=window)
                job.report((i + 1) / n_strips, f"sample: rows {y1}/{size}")
            job.check()
    return paths
