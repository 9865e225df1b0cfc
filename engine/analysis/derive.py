"""``python -m engine derive``: structure-modality rasters for multimodal models (VSGNet's X).

Each provider writes an ordinary GeoTIFF **on the input's grid** (same CRS, transform and size),
computed window by window and streamed to disk in block-aligned strips (memory bounded by one strip
of rows, never by raster area), atomically (a cancel or error leaves no output), with progress and
cancel through the job protocol.

* ``edges`` — training-free structure map: luminance (Rec. 601 weights of the first three bands,
  or the mean of fewer bands), Gaussian smoothing (σ = ``sigma``), Sobel gradient magnitude in
  luminance units per pixel.  Windows are read with a halo wider than the filters' support and
  the raster edges are extended by mirror symmetry, so the windowed result is identical to a
  whole-image computation (no seams).  uint8 output: round(min(|∇|·gain, 1)·254), 255 = nodata
  (input invalid); float32 output: the raw magnitude, nodata -1.  8-bit inputs are scaled by 1/255;
  other inputs by their 2–98 % luminance range sampled on a decimated read (one scene-wide
  scale, never per window).
* ``dsm`` — a user's DSM / depth raster warped (bilinear) onto the input grid, float32, nodata
  -9999 outside its footprint or where it has nodata.  ``ndsm=True`` subtracts a local minimum
  filter (``ndsm_window`` pixels; a windowed computation with a halo, exact) — a simple normalised
  DSM (height above local ground).
* ``sam`` — Segment Anything automatic masks (the engine's own SAM, :mod:`engine.click.sam_masks`; no
  segment_anything package or torchvision) from a local SAM checkpoint (ViT-B/L/H, the variant
  read from its shapes): band 1 a grey segment map (each mask painted with a pseudo-random level
  1…254, small masks on top, 0 = no mask), band 2 the mask boundaries (254); 255 = nodata.
  Windows of ``tile`` pixels with a ``halo`` of context; segment ids are per window (a grey map,
  not global instance ids).  Without a checkpoint an InputError states the fix.
"""
from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from scipy import ndimage

from ..io.cog import check_raster_outputs
from ..io.rasters import check_overlap, data_band_indexes, open_raster, output_profile
from ..io.writer import StripWriter
from ..formats.overrides import comma_numbers
from ..jobs import CancelledFn, InputError, Job, ProgressFn, atomic_output, job_outputs

COMMAND = "derive"
HELP = "write a structure-modality raster (edges, aligned DSM, SAM masks) on an image's grid"
KINDS = ("edges", "dsm", "sam")
UINT8_NODATA = 255
FLOAT_NODATA = -1.0
DSM_NODATA = -9999.0
LUMA = (0.299, 0.587, 0.114)
SAM_TYPES = ("vit_h", "vit_l", "vit_b")


# ---- windowed streaming ----------------------------------------------------------------------

def read_padded(ds, bands: Sequence[int], x0: int, y0: int, w: int, h: int,
                fill: str = "symmetric") -> Tuple[np.ndarray, np.ndarray]:
    """Read the window (x0, y0, w, h), which may extend beyond the raster.

    Returns ``pixels`` (bands×h×w float32; parts outside the raster mirrored (``symmetric``) or
    zero (``zero``)) and ``valid`` (h×w bool: inside the raster and unmasked, finite).
    """
    W, H = ds.width, ds.height
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    win = Window(cx0, cy0, cx1 - cx0, cy1 - cy0)
    pixels = ds.read(list(bands), window=win, out_dtype="float32")
    valid = ds.dataset_mask(window=win) > 0
    finite = np.isfinite(pixels).all(axis=0)
    valid &= finite
    if not finite.all():
        pixels = np.nan_to_num(pixels, nan=0.0, posinf=0.0, neginf=0.0)
    pad = ((cy0 - y0, y0 + h - cy1), (cx0 - x0, x0 + w - cx1))
    if any(p for pair in pad for p in pair):
        mode = "symmetric" if fill == "symmetric" else "constant"
        pixels = np.pad(pixels, ((0, 0),) + pad, mode=mode)
        valid = np.pad(valid, pad, constant_values=False)
    return pixels, valid


def stream_windows(job: Job, output: str | Path, profile: Dict[str, Any],
                   compute: Callable[[int, int, int, int], np.ndarray], *, width: int,
                   height: int, rows: int = 256, tile: int = 1024,
                   descriptions: Optional[List[str]] = None, tags: Optional[Dict[str, str]] = None,
                   label: str = "derive") -> None:
    """Fill ``output`` strip by strip: ``compute(x, y, w, h)`` returns bands×h×w for one window."""
    count, dtype = profile["count"], profile["dtype"]
    windows = ((height + rows - 1) // rows) * ((width + tile - 1) // tile)
    done = 0
    with atomic_output(output) as tmp:
        writer = StripWriter(tmp, profile, block_rows=256, descriptions=descriptions, tags=tags)
        try:
            for y in range(0, height, rows):
                h = min(rows, height - y)
                strip = np.empty((count, h, width), dtype=dtype)
                for x in range(0, width, tile):
                    job.check()
                    w = min(tile, width - x)
                    strip[:, :, x:x + w] = compute(x, y, w, h)
                    done += 1
                    job.report(done / windows, f"{label}: window {done}/{windows}")
                writer.put(y, strip)
        except BaseException:
            writer.abort()
            raise
        writer.close()


def _summary(kind: str, output, ds, started: float, **extra) -> Dict[str, Any]:
    return {"kind": kind, "output": str(output), "width": ds.width, "height": ds.height,
            "seconds": time.perf_counter() - started, **extra}


# ---- edges -----------------------------------------------------------------------------------

def edge_halo(sigma: float) -> int:
    """Pixels of context a window needs: Gaussian radius (4σ) + Sobel (1) + 1 spare."""
    return int(4.0 * float(sigma) + 0.5) + 2


def luminance(pixels: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of the first three bands (mean of the bands when fewer than three)."""
    if pixels.shape[0] >= 3:
        return LUMA[0] * pixels[0] + LUMA[1] * pixels[1] + LUMA[2] * pixels[2]
    return pixels.mean(axis=0)


def gradient_magnitude(lum: np.ndarray, sigma: float) -> np.ndarray:
    """|∇(G_σ * lum)| in units of ``lum`` per pixel (Sobel / 8)."""
    g = ndimage.gaussian_filter(lum.astype(np.float32), sigma, mode="reflect", truncate=4.0) \
        if sigma > 0 else lum.astype(np.float32)
    gx = ndimage.sobel(g, axis=1, mode="reflect")
    gy = ndimage.sobel(g, axis=0, mode="reflect")
    return np.hypot(gx, gy) / 8.0


def luminance_range(ds, bands: Sequence[int], max_side: int = 1024) -> Tuple[float, float]:
    """(low, high) luminance scale: 0..255 for 8-bit rasters, else the 2–98 % range of a
    decimated read (at most ``max_side`` pixels a side; never the full raster in memory)."""
    if all(ds.dtypes[b - 1] == "uint8" for b in bands):
        return 0.0, 255.0
    f = max(1, int(np.ceil(max(ds.width, ds.height) / max_side)))
    shape = (len(bands), max(1, ds.height // f), max(1, ds.width // f))
    pixels = ds.read(list(bands), out_shape=shape, out_dtype="float32",
                     resampling=Resampling.nearest)
    mask = ds.dataset_mask(out_shape=shape[1:], resampling=Resampling.nearest) > 0
    lum = luminance(np.nan_to_num(pixels))
    sel = lum[mask & np.isfinite(pixels).all(axis=0)]
    if sel.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(sel, [2, 98])
    return float(lo), float(hi if hi > lo else lo + 1.0)


@job_outputs
def derive_edges(input: str | Path, output: str | Path, *, bands: Optional[Sequence[int]] = None,
                 sigma: float = 1.0, gain: float = 4.0, dtype: str = "uint8", tile: int = 1024,
                 rows: int = 256, progress: Optional[ProgressFn] = None,
                 cancelled: Optional[CancelledFn] = None) -> Dict[str, Any]:
    """Gradient-magnitude structure map of ``input`` on its grid (see the module docstring)."""
    if dtype not in ("uint8", "float32"):
        raise InputError(f"edges dtype must be uint8 or float32, not {dtype!r}")
    if sigma < 0 or gain <= 0:
        raise InputError("sigma must be ≥ 0 and gain > 0")
    job = Job(progress, cancelled)
    check_raster_outputs({"--output": output}, [input])
    started = time.perf_counter()
    with open_raster(input) as ds:
        use = _bands(ds, bands, str(input))
        lo, hi = luminance_range(ds, use)
        halo = edge_halo(sigma)
        nodata = UINT8_NODATA if dtype == "uint8" else FLOAT_NODATA

        def compute(x: int, y: int, w: int, h: int) -> np.ndarray:
            pixels, valid = read_padded(ds, use, x - halo, y - halo, w + 2 * halo, h + 2 * halo)
            lum = (luminance(pixels) - lo) / (hi - lo)
            mag = gradient_magnitude(lum, sigma)[halo:halo + h, halo:halo + w]
            ok = valid[halo:halo + h, halo:halo + w]
            if dtype == "uint8":
                out = np.round(np.minimum(mag * gain, 1.0) * 254).astype(np.uint8)
            else:
                out = mag.astype(np.float32)
            out[~ok] = nodata
            return out[None]

        stream_windows(job, output, output_profile(ds, 1, dtype, nodata), compute,
                       width=ds.width, height=ds.height, rows=rows, tile=tile,
                       descriptions=["edges"],
                       tags={"RS_SEG_STRUCTURE": "edges", "SIGMA": str(sigma),
                             "GAIN": str(gain), "LUMINANCE_RANGE": f"{lo},{hi}"},
                       label="edges")
        summary = _summary("edges", output, ds, started, halo=halo)
    job.report(1.0, "edges: done")
    return summary


# ---- DSM ---------------------------------------------------------------------------------------

@job_outputs
def derive_dsm(input: str | Path, output: str | Path, dsm: str | Path, *, ndsm: bool = False,
               ndsm_window: int = 65, band: int = 1, tile: int = 1024, rows: int = 256,
               resampling: str = "bilinear", progress: Optional[ProgressFn] = None,
               cancelled: Optional[CancelledFn] = None) -> Dict[str, Any]:
    """``dsm`` warped onto the grid of ``input`` (optionally as nDSM: minus a local minimum)."""
    if ndsm and ndsm_window < 3:
        raise InputError("ndsm_window must be at least 3 pixels")
    try:
        method = Resampling[resampling]
    except KeyError:
        raise InputError(f"unknown resampling {resampling!r}; use nearest, bilinear or "
                         f"cubic") from None
    job = Job(progress, cancelled)
    check_raster_outputs({"--output": output}, [input, dsm])
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        ds = stack.enter_context(open_raster(input))
        src = stack.enter_context(open_raster(dsm))
        check_overlap(ds, src, dsm)
        if not 1 <= band <= src.count:
            raise InputError(f"band {band} does not exist in {dsm} ({src.count} bands)")
        if ds.crs is None or src.crs is None:
            if (src.width, src.height) != (ds.width, ds.height):
                raise InputError(f"{dsm} or {input} has no CRS; without georeferencing the DSM "
                                 f"must have the image's size")
            grid = src        # same pixel grid by assumption
        else:
            grid = stack.enter_context(WarpedVRT(
                src, crs=ds.crs, transform=ds.transform, width=ds.width, height=ds.height,
                resampling=method, dtype="float32", nodata=DSM_NODATA))
        radius = ndsm_window // 2 if ndsm else 0

        def compute(x: int, y: int, w: int, h: int) -> np.ndarray:
            pixels, valid = read_padded(grid, [band], x - radius, y - radius,
                                        w + 2 * radius, h + 2 * radius, fill="zero")
            z = pixels[0]
            if ndsm:
                ground = ndimage.minimum_filter(np.where(valid, z, np.inf), size=ndsm_window,
                                                mode="constant", cval=np.inf)
                z = z - ground
            out = z[radius:radius + h, radius:radius + w].astype(np.float32)
            out[~valid[radius:radius + h, radius:radius + w]] = DSM_NODATA
            return out[None]

        name = "ndsm" if ndsm else "dsm"
        stream_windows(job, output, output_profile(ds, 1, "float32", DSM_NODATA), compute,
                       width=ds.width, height=ds.height, rows=rows, tile=tile,
                       descriptions=[name],
                       tags={"RS_SEG_STRUCTURE": name, "SOURCE": str(dsm),
                             **({"NDSM_WINDOW": str(ndsm_window)} if ndsm else {})},
                       label=name)
        summary = _summary(name, output, ds, started)
    job.report(1.0, "dsm: done")
    return summary


# ---- SAM ---------------------------------------------------------------------------------------

def sam_problems(checkpoint: Optional[str | Path]) -> List[str]:
    """Why the SAM provider cannot run here (empty when it can)."""
    if checkpoint is None:
        return ["no SAM checkpoint given: pass --sam-checkpoint with a local file such as "
                "sam_vit_b_01ec64.pth (nothing is downloaded)"]
    if not Path(checkpoint).is_file():
        return [f"the SAM checkpoint {checkpoint} does not exist"]
    return []


def _load_sam_generator(checkpoint: str | Path, model_type: Optional[str], device,
                        options: Dict[str, Any]):
    """The engine's SAM (variant read from the checkpoint's shapes) and its mask generator."""
    from ..click.sam_masks import MaskGenerator
    from ..models.sam.checkpoint import load_sam
    sam = load_sam(checkpoint)
    if model_type and model_type != sam.config.name:
        raise InputError(f"{checkpoint} is a SAM {sam.config.name} checkpoint, not {model_type}; "
                         f"drop --sam-model (the variant is read from the file)")
    return sam.config.name, MaskGenerator(sam.to(device), device, **options)


def masks_to_maps(masks: Sequence[Dict[str, Any]], shape: Tuple[int, int]) -> np.ndarray:
    """SAM masks → [grey segment map, boundary map] (2×H×W uint8); larger masks painted first."""
    ids = np.zeros(shape, dtype=np.int32)
    for k, m in enumerate(sorted(masks, key=lambda m: -int(m.get("area", 0))), start=1):
        ids[np.asarray(m["segmentation"], dtype=bool)] = k
    grey = np.where(ids > 0, 1 + (ids.astype(np.int64) * 2654435761 % 254), 0).astype(np.uint8)
    edge = np.zeros(shape, dtype=bool)
    edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    edge[1:, :] |= ids[1:, :] != ids[:-1, :]
    return np.stack([grey, np.where(edge, 254, 0).astype(np.uint8)])


def to_uint8_rgb(pixels: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """bands×H×W → H×W×3 uint8 RGB (fewer bands replicated) scaled from (lo, hi)."""
    rgb = pixels[:3] if pixels.shape[0] >= 3 else np.repeat(pixels[:1], 3, axis=0)
    scaled = np.clip((rgb - lo) / (hi - lo) * 255.0, 0, 255)
    return np.ascontiguousarray(np.round(scaled).astype(np.uint8).transpose(1, 2, 0))


@job_outputs
def derive_sam(input: str | Path, output: str | Path, checkpoint: Optional[str | Path], *,
               model_type: Optional[str] = None, bands: Optional[Sequence[int]] = None,
               tile: int = 1024, halo: int = 64, device: str = "auto",
               points_per_side: int = 32, progress: Optional[ProgressFn] = None,
               cancelled: Optional[CancelledFn] = None) -> Dict[str, Any]:
    """SAM automatic-mask structure map (2 bands) of ``input`` on its grid."""
    problems = sam_problems(checkpoint)
    if problems:
        raise InputError("the 'sam' structure provider cannot run: " + "; ".join(problems) +
                         ". Alternatives without SAM: --kind edges (training-free) or "
                         "--kind dsm --dsm DSM.tif")
    from ..compute.devices import resolve_device
    job = Job(progress, cancelled)
    check_raster_outputs({"--output": output}, [input, checkpoint])
    started = time.perf_counter()
    with open_raster(input) as ds:
        use = _bands(ds, bands, str(input))
        lo, hi = luminance_range(ds, use)
        job.report(0.0, "sam: loading the checkpoint")
        mtype, generator = _load_sam_generator(checkpoint, model_type, resolve_device(device),
                                               {"points_per_side": points_per_side})

        def compute(x: int, y: int, w: int, h: int) -> np.ndarray:
            pixels, valid = read_padded(ds, use, x - halo, y - halo, w + 2 * halo, h + 2 * halo)
            maps = masks_to_maps(generator.generate(to_uint8_rgb(pixels, lo, hi)),
                                 pixels.shape[1:])
            out = maps[:, halo:halo + h, halo:halo + w].copy()
            out[:, ~valid[halo:halo + h, halo:halo + w]] = UINT8_NODATA
            return out

        stream_windows(job, output, output_profile(ds, 2, "uint8", UINT8_NODATA), compute,
                       width=ds.width, height=ds.height, rows=tile, tile=tile,
                       descriptions=["sam_segments", "sam_boundaries"],
                       tags={"RS_SEG_STRUCTURE": "sam", "SAM_MODEL": mtype,
                             "SAM_CHECKPOINT": Path(checkpoint).name},
                       label="sam")
        summary = _summary("sam", output, ds, started, model=mtype)
    job.report(1.0, "sam: done")
    return summary


# ---- shared helpers and CLI --------------------------------------------------------------------

def _bands(ds, bands: Optional[Sequence[int]], label: str) -> List[int]:
    if bands:
        bad = [b for b in bands if not 1 <= b <= ds.count]
        if bad:
            raise InputError(f"band(s) {bad} do not exist in {label} ({ds.count} bands)")
        return list(bands)
    return data_band_indexes(ds)[:3] or [1]


def derive(kind: str, input: str | Path, output: str | Path, *, dsm: Optional[str] = None,
           sam_checkpoint: Optional[str] = None, progress: Optional[ProgressFn] = None,
           cancelled: Optional[CancelledFn] = None, **options: Any) -> Dict[str, Any]:
    """Dispatch to the ``kind`` provider (``edges``, ``dsm`` or ``sam``)."""
    if kind == "edges":
        return derive_edges(input, output, progress=progress, cancelled=cancelled, **options)
    if kind == "dsm":
        if not dsm:
            raise InputError("--kind dsm needs the DSM/depth raster: --dsm DSM.tif")
        return derive_dsm(input, output, dsm, progress=progress, cancelled=cancelled, **options)
    if kind == "sam":
        return derive_sam(input, output, sam_checkpoint, progress=progress, cancelled=cancelled,
                          **options)
    raise InputError(f"unknown structure kind {kind!r}; use one of {', '.join(KINDS)}")


_band_list = comma_numbers(int, "bands", "1,2,3")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", required=True, choices=KINDS,
                   help="edges: gradient structure map (no model); dsm: align a DSM/depth raster; "
                        "sam: Segment Anything masks (needs a local SAM checkpoint)")
    p.add_argument("--input", required=True, help="the image raster (defines the output grid)")
    p.add_argument("--output", required=True, help="structure raster to write (GeoTIFF)")
    p.add_argument("--dsm", help="DSM / depth raster for --kind dsm (any CRS / resolution)")
    p.add_argument("--ndsm", action="store_true", help="dsm: subtract a local minimum (nDSM)")
    p.add_argument("--ndsm-window", type=int, default=65,
                   help="dsm: minimum-filter window in pixels (default 65)")
    p.add_argument("--sam-checkpoint", help="local SAM checkpoint (e.g. sam_vit_b_01ec64.pth)")
    p.add_argument("--sam-model", choices=SAM_TYPES,
                   help="SAM variant the checkpoint must be (default: read from the file)")
    p.add_argument("--bands", type=_band_list, help="image bands to use (default: first three)")
    p.add_argument("--sigma", type=float, default=1.0, help="edges: Gaussian σ in pixels")
    p.add_argument("--gain", type=float, default=4.0,
                   help="edges: uint8 scale, 254 at |∇| ≥ 1/gain (luminance range per pixel)")
    p.add_argument("--dtype", choices=("uint8", "float32"), default="uint8",
                   help="edges: output data type")
    p.add_argument("--tile", type=int, default=1024, help="window width in pixels")
    p.add_argument("--device", default="auto", help="sam: auto | cpu | cuda | cuda:N")


def run(args: argparse.Namespace, progress: Optional[ProgressFn] = None) -> None:
    """Run a provider from parsed arguments and print what was written."""
    if args.kind == "edges":
        options = dict(bands=args.bands, sigma=args.sigma, gain=args.gain, dtype=args.dtype,
                       tile=args.tile)
    elif args.kind == "dsm":
        options = dict(ndsm=args.ndsm, ndsm_window=args.ndsm_window, tile=args.tile)
    else:
        options = dict(model_type=args.sam_model, bands=args.bands, tile=args.tile,
                       device=args.device)
    result = derive(args.kind, args.input, args.output, dsm=args.dsm,
                    sam_checkpoint=args.sam_checkpoint, progress=progress, **options)
    print(f"wrote {result['output']} ({result['kind']}, {result['width']}x{result['height']} px, "
          f"{result['seconds']:.1f} s)")
