"""Raster input and output: open with clear errors, windowed reads with validity masks,
tiled compressed GeoTIFF writers for class, probability and change rasters."""
from __future__ import annotations

import contextlib
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio._err import CPLE_BaseError
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds
from rasterio.windows import transform as window_transform

from ..jobs import InputError
from .band_names import count_hint, match_by_name

SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
BLOCK = 256
CLASS_NODATA = 255
GDAL_CACHE_BYTES = 64 << 20


def bounded_gdal_cache() -> rasterio.Env:
    """GDAL environment with a small block cache for streaming jobs.

    GDAL's default cache is 5 % of RAM; a job streaming through a large raster would fill it and
    memory would grow with raster area.  Reads here are window-local and writes block-aligned,
    so a small cache costs nothing.
    """
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES)


def open_raster(path: str | Path) -> rasterio.io.DatasetReader:
    """Open a raster for reading, turning GDAL failures into a clear :class:`InputError`."""
    p = Path(path)
    if not str(path).startswith("/vsi") and not p.exists():
        raise InputError(f"input raster {p} does not exist; check the path")
    try:
        with warnings.catch_warnings():  # a raster without georeferencing is handled (GSD)
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(p)
    except RasterioIOError as exc:
        raise InputError(f"{p} is not a raster GDAL can read ({exc}); give a GeoTIFF or another "
                         f"GDAL raster, or re-create the file if it is damaged") from None
    if ds.dtypes[0] not in SUPPORTED_DTYPES:
        ds.close()
        raise InputError(f"{p} has data type {ds.dtypes[0]}; supported: "
                         f"{', '.join(SUPPORTED_DTYPES)}")
    return ds


_BLOCK_FAILURE = re.compile(r"(?P<file>[^:]+?), band \d+: IReadBlock failed at X offset "
                            r"(?P<bx>\d+), Y offset (?P<by>\d+)(?::\s*(?P<why>.*))?")


def read_failure(exc: BaseException, path: Optional[str | Path] = None,
                 window: Optional[Window] = None) -> Optional[InputError]:
    """One sentence for a GDAL read failure: the file and the pixel block that cannot be read
    (from GDAL's message, else ``window`` of ``path``); None when ``exc`` is not one."""
    if not isinstance(exc, (RasterioIOError, CPLE_BaseError)):
        return None
    text = str(exc).replace("Read or write failed. ", "").strip()
    match = _BLOCK_FAILURE.search(text)
    name, where, why = str(path) if path else "a raster", "", text.rstrip(".")
    if match:
        name = match["file"].strip()
        why = (match["why"] or "").rsplit(": ", 1)[-1].strip().rstrip(".") or why
        bx, by = int(match["bx"]), int(match["by"])
        where = f"the pixel block at block column {bx}, row {by}"
        with contextlib.suppress(Exception), rasterio.open(name) as ds:
            bh, bw = ds.block_shapes[0]
            x0, y0 = bx * bw, by * bh
            where = (f"the pixel block x {x0}–{min(x0 + bw, ds.width) - 1}, "
                     f"y {y0}–{min(y0 + bh, ds.height) - 1}")
    elif window is not None:
        x0, y0 = int(window.col_off), int(window.row_off)
        where = (f"the pixels x {x0}–{x0 + int(window.width) - 1}, "
                 f"y {y0}–{y0 + int(window.height) - 1}")
    place = f" at {where}" if where else ""
    return InputError(f"{name} cannot be read{place} ({why}); the file is damaged or truncated: "
                      f"re-create or re-download it")


@contextlib.contextmanager
def reading(ds: rasterio.io.DatasetReader, window: Optional[Window] = None) -> Iterator[None]:
    """Turn a failed read of ``ds`` in the body into :func:`read_failure`'s sentence."""
    try:
        yield
    except (RasterioIOError, CPLE_BaseError) as exc:
        raise read_failure(exc, ds.name, window) from None


def data_band_indexes(ds: rasterio.io.DatasetReader) -> List[int]:
    """1-based indexes of the bands that carry data (an alpha band is a mask, not data)."""
    return [i + 1 for i, ci in enumerate(ds.colorinterp) if ci != ColorInterp.alpha]


def alpha_note(ds: rasterio.io.DatasetReader, used: Sequence[int],
               option: str = "--bands") -> Optional[str]:
    """One sentence when ``ds`` flags a band as alpha: it is read as a mask and not as data
    (NIR bands of RGBIR tiles are often flagged so), or ``used`` reads it as data anyway."""
    alpha = [i for i in range(1, ds.count + 1) if ds.colorinterp[i - 1] == ColorInterp.alpha]
    if not alpha:
        return None
    name = Path(ds.name).name
    dropped = [b for b in alpha if b not in used]
    if dropped:
        every = ",".join(str(b) for b in range(1, ds.count + 1))
        return (f"{name}: band {', '.join(map(str, dropped))} is flagged as alpha, so it is used "
                f"as a mask (transparent where 0), not as data; if it holds data (e.g. NIR), "
                f"choose it with {option} {every}")
    return (f"{name}: band {', '.join(map(str, alpha))} is flagged as alpha but read as data; "
            f"pixels are masked by the nodata value only")


def resolve_bands(ds: rasterio.io.DatasetReader, card_bands: Sequence[Mapping[str, Any]],
                  chosen: Optional[Sequence[int]] = None, label: str = "the input") -> List[int]:
    """Map the card's bands to 1-based raster band indexes, or explain the mismatch."""
    return match_bands(ds, card_bands, chosen, label)[0]


def match_bands(ds: rasterio.io.DatasetReader, card_bands: Sequence[Mapping[str, Any]],
                chosen: Optional[Sequence[int]] = None, label: str = "the input"
                ) -> Tuple[List[int], Optional[str]]:
    """The card's bands as 1-based raster band indexes, and a note when they were matched by
    name out of the file's order (:mod:`engine.io.band_names`).

    ``chosen`` (from ``--bands``) picks raster bands explicitly, in the card's order; else the
    bands are matched by name when the raster names them, else the data bands are taken in order.
    """
    names = ",".join(b["name"] for b in card_bands)
    if chosen:
        bad = [b for b in chosen if not 1 <= b <= ds.count]
        if bad:
            raise InputError(f"band(s) {bad} do not exist in {label} ({ds.count} bands)")
        if len(chosen) != len(card_bands):
            raise InputError(f"model expects {len(card_bands)} bands ({names}); "
                             f"{len(chosen)} were chosen")
        return list(chosen), None
    by_name = match_by_name(ds, card_bands, label)
    if by_name is not None:
        return by_name
    data = data_band_indexes(ds)
    if len(data) != len(card_bands) and ds.count == len(card_bands):
        data = list(range(1, ds.count + 1))  # an "alpha" flag on e.g. a NIR band is common
    if len(data) != len(card_bands):
        raise InputError(count_hint(len(card_bands), names, len(data), label))
    return data, None


@dataclass
class WindowData:
    """One window of pixels: ``pixels`` float32 B×T×T (padded), ``valid`` bool T×T.

    ``grid_valid`` is the validity on the input grid when the window was read resampled
    (:mod:`engine.io.resample`); the stitcher blends on that grid.
    """

    pixels: np.ndarray
    valid: np.ndarray
    grid_valid: Optional[np.ndarray] = None

    @property
    def output_valid(self) -> np.ndarray:
        """Validity on the input (output) grid."""
        return self.valid if self.grid_valid is None else self.grid_valid


class WindowReader:
    """Reads fixed-size windows of selected bands; pads beyond the raster by reflection.

    A pixel is valid where the dataset mask (nodata / alpha / internal mask) says so and every
    selected band is finite.  When a band flagged as alpha is read as data, the alpha flag is
    wrong and validity comes from the nodata value alone.  Pixels outside the raster are invalid.
    """

    def __init__(self, ds: rasterio.io.DatasetReader, bands: Sequence[int]) -> None:
        self.ds = ds
        self.bands = list(bands)
        self._alpha_is_data = any(b not in data_band_indexes(ds) for b in self.bands)

    def read(self, x: int, y: int, size: int) -> WindowData:
        """Read the ``size``×``size`` window whose top-left pixel is (x, y)."""
        w, h = self.ds.width, self.ds.height
        x1, y1 = min(x + size, w), min(y + size, h)
        win = Window(x, y, x1 - x, y1 - y)
        with reading(self.ds, win):
            pixels = self.ds.read(self.bands, window=win, out_dtype="float32")
            if self._alpha_is_data:
                nodata = self.ds.nodata
                valid = (np.ones(pixels.shape[1:], dtype=bool) if nodata is None
                         else (pixels != nodata).any(axis=0))
            else:
                valid = self.ds.dataset_mask(window=win) > 0
        finite = np.isfinite(pixels).all(axis=0)
        valid &= finite
        if not finite.all():
            pixels = np.nan_to_num(pixels, nan=0.0, posinf=0.0, neginf=0.0)
        pad_y, pad_x = size - (y1 - y), size - (x1 - x)
        if pad_x or pad_y:
            pixels = np.pad(pixels, ((0, 0), (0, pad_y), (0, pad_x)), mode="symmetric")
            valid = np.pad(valid, ((0, pad_y), (0, pad_x)), constant_values=False)
        return WindowData(pixels, valid)


def normalise(pixels: np.ndarray, valid: np.ndarray, mean: Sequence[float],
              std: Sequence[float]) -> np.ndarray:
    """Standardise bands with the card's statistics; invalid pixels become 0 (the mean)."""
    m = np.asarray(mean, dtype=np.float32)[:, None, None]
    s = np.asarray(std, dtype=np.float32)[:, None, None]
    out = (pixels - m) / s
    out *= valid[None]
    return out


def output_profile(ds: rasterio.io.DatasetReader, count: int, dtype: str,
                   nodata: Optional[float]) -> Dict[str, Any]:
    """A tiled, DEFLATE-compressed GeoTIFF profile on the grid of ``ds``."""
    profile = {
        "driver": "GTiff", "width": ds.width, "height": ds.height, "count": count,
        "dtype": dtype, "crs": ds.crs, "transform": ds.transform, "nodata": nodata,
        "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate",
        "predictor": 2 if dtype != "float32" else 3, "BIGTIFF": "IF_SAFER",
    }
    if ds.width < BLOCK or ds.height < BLOCK:
        profile.update(tiled=False, blockxsize=None, blockysize=None)
        profile = {k: v for k, v in profile.items() if v is not None}
    return profile


def class_colormap(classes: Sequence[Mapping[str, Any]]) -> Dict[int, Tuple[int, int, int, int]]:
    """GDAL colour table entries for the card's classes; the nodata value is transparent."""
    table = {int(c["value"]): (*[int(v) for v in c["color"]], 255) for c in classes}
    table[CLASS_NODATA] = (0, 0, 0, 0)
    return table


def class_tags(classes: Sequence[Mapping[str, Any]]) -> Dict[str, str]:
    """Band metadata embedded in the GeoTIFF: class names by value, and the full list as JSON."""
    tags = {f"CLASS_{int(c['value'])}": str(c["name"]) for c in classes}
    tags["RS_SEG_CLASSES"] = json.dumps(
        [{"value": int(c["value"]), "name": c["name"], "color": list(c["color"]),
          **({"shape": c["shape"]} if "shape" in c else {})}
         for c in classes])
    return tags


def check_overlap(base: rasterio.io.DatasetReader, other: rasterio.io.DatasetReader,
                  other_path: str | Path) -> None:
    """Raise :class:`InputError` when ``other`` does not overlap ``base`` (CRSs may differ)."""
    if base.crs is None or other.crs is None:
        if (base.width, base.height) != (other.width, other.height):
            raise InputError(f"{other_path} has no CRS and a different size than {base.name}; "
                             f"georeference it or give a raster on the same grid")
        return
    l, b, r, t = transform_bounds(other.crs, base.crs, *other.bounds)
    bl, bb, br, bt = base.bounds
    if l >= br or r <= bl or b >= bt or t <= bb:
        raise InputError(f"{other_path} does not overlap {base.name}; give data of the same area")


def same_grid(a: rasterio.io.DatasetReader, b: rasterio.io.DatasetReader) -> bool:
    """True when both rasters share CRS, transform and size (no resampling needed)."""
    return a.crs == b.crs and a.transform == b.transform and a.shape == b.shape


def without_alpha_flags(ds: rasterio.io.DatasetReader) -> rasterio.io.DatasetReader:
    """``ds`` seen through an in-memory VRT in which no band is flagged alpha.

    GDAL flags the 4th byte band of RGB TIFFs as alpha, and its warper then applies that band as
    transparency; when the band is really data (e.g. NIR) the warp must not see the flag.
    """
    from osgeo import gdal
    name = f"/vsimem/rs_seg_noalpha_{id(ds)}_{abs(hash(ds.name))}.vrt"
    interp = ",".join("undefined" if c == ColorInterp.alpha else c.name for c in ds.colorinterp)
    gdal.Translate(name, ds.name, options=["-of", "VRT", "-colorinterp", interp])
    return rasterio.open(name)


def warp_to_grid(ds: rasterio.io.DatasetReader, crs, transform, width: int, height: int,
                 resampling: Resampling = Resampling.bilinear) -> WarpedVRT:
    """A virtual raster of ``ds`` on another grid, read window by window (never whole).

    Bands flagged alpha act as masks during the warp; pass ``without_alpha_flags(ds)`` when
    such a band is data."""
    return WarpedVRT(ds, crs=crs, transform=transform, width=width, height=height,
                     resampling=resampling)


def intersection_grid(base: rasterio.io.DatasetReader, other: rasterio.io.DatasetReader,
                      other_path: str | Path) -> Tuple[Any, int, int]:
    """The part of ``base``'s pixel grid covered by ``other``: (transform, width, height)."""
    check_overlap(base, other, other_path)
    if base.crs is None or other.crs is None:
        return base.transform, base.width, base.height
    l, b, r, t = transform_bounds(other.crs, base.crs, *other.bounds)
    bl, bb, br, bt = base.bounds
    win = from_bounds(max(l, bl), max(b, bb), min(r, br), min(t, bt), base.transform)
    win = win.round_offsets(op="ceil").round_lengths(op="floor")
    col0, row0 = max(0, int(win.col_off)), max(0, int(win.row_off))
    width = min(int(win.width), base.width - col0)
    height = min(int(win.height), base.height - row0)
    if width < 1 or height < 1:
        raise InputError(f"{other_path} overlaps {base.name} by less than one pixel")
    return window_transform(Window(col0, row0, width, height), base.transform), width, height


def parse_extent(text: Optional[str]) -> Optional[Tuple[float, float, float, float]]:
    """``--extent LEFT,BOTTOM,RIGHT,TOP`` as numbers (None without one)."""
    if text is None:
        return None
    try:
        left, bottom, right, top = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--extent takes four numbers LEFT,BOTTOM,RIGHT,TOP in the image's "
                         f"CRS (got {text!r})") from None
    if left >= right or bottom >= top:
        raise InputError(f"--extent {text}: LEFT must be below RIGHT and BOTTOM below TOP")
    return left, bottom, right, top


def bounds_window(ds: rasterio.io.DatasetReader,
                  bounds: Tuple[float, float, float, float]) -> Optional[Window]:
    """The whole pixels of ``ds`` inside ``bounds`` (left, bottom, right, top in its CRS), or
    None when they do not meet."""
    win = from_bounds(*bounds, transform=ds.transform).round_offsets().round_lengths()
    try:
        win = win.intersection(Window(0, 0, ds.width, ds.height))
    except Exception:  # noqa: BLE001 (rasterio raises WindowError when they do not meet)
        return None
    if win.width < 1 or win.height < 1:
        return None
    return Window(int(win.col_off), int(win.row_off), int(win.width), int(win.height))
