"""Ground sampling distance: read it from a raster and decide how a model sees the raster.

A model is trained at one GSD (``gsd_m`` in its card).  An image of another GSD is read
resampled to the model's GSD window by window (:mod:`engine.io.resample`) when the two differ by
more than :data:`TOLERANCE`; the output always stays on the input's grid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import rasterio
from rasterio import Affine
from rasterio.errors import CRSError
from rasterio.warp import transform as transform_points

from ..jobs import InputError

TOLERANCE = 0.25  # relative GSD difference below which the network reads the raster as it is
MAX_RATIO = 8.0  # beyond this the model would see another kind of imagery, not another GSD
WGS84_A, WGS84_E2 = 6_378_137.0, 0.00669437999014  # semi-major axis (m), eccentricity²


def raster_gsd(ds: rasterio.io.DatasetReader) -> Optional[float]:
    """Ground size of a pixel of ``ds`` in metres at the raster's centre, or None when it is not
    georeferenced: :func:`ground_pixel_size` to 3 significant digits (a GSD is not known
    better; UTM's 0.9996 scale stays a 0.5 m pixel, Web Mercator's 2 m at 54° N is 1.18 m)."""
    if ds.crs is None or ds.transform.is_identity:
        return None
    size = ground_pixel_size(ds.crs, ds.transform, ds.width, ds.height)
    return float(f"{size:.3g}") if math.isfinite(size) else None


def ground_pixel_size(crs: Any, transform: Affine, width: int, height: int) -> float:
    """Geodesic length on the WGS 84 ellipsoid of one pixel step at the centre of a
    ``width``×``height`` grid: the geometric mean of the column and row steps, in metres.

    Measured on the ground, not in the CRS's units, so every CRS comes out right: geographic
    degrees, and projections whose scale varies across the map (Web Mercator's 2 m pixel at
    54° N is 1.18 m on the ground).  A pixel is tiny next to the Earth, so the length of a step
    is the ellipsoid's local metric: meridian radius × Δlatitude, prime-vertical radius ×
    cos(latitude) × Δlongitude.  A CRS with no route to WGS 84 (a local engineering CRS) keeps
    its linear unit; one with neither gives NaN (the GSD is unknown).
    """
    cx, cy = width / 2, height / 2
    xs, ys = zip(*(transform * p for p in ((cx, cy), (cx + 1, cy), (cx, cy + 1))))
    try:
        lons, lats = transform_points(crs, "EPSG:4326", list(xs), list(ys))
    except Exception:  # noqa: BLE001 (GDAL raises several kinds for CRSs without a datum)
        lons = lats = [math.nan]
    if not all(map(math.isfinite, (*lons, *lats))):
        px, py = math.hypot(transform.a, transform.d), math.hypot(transform.b, transform.e)
        try:
            return math.sqrt(px * py) * float(crs.linear_units_factor[1])
        except CRSError:  # neither on the Earth nor in a linear unit (a damaged header)
            return math.nan
    lat = math.radians(lats[0])
    w = math.sqrt(1 - WGS84_E2 * math.sin(lat) ** 2)
    meridian, prime = WGS84_A * (1 - WGS84_E2) / w ** 3, WGS84_A / w

    def step(i: int) -> float:
        dlat = math.radians(lats[i] - lats[0])
        dlon = math.radians((lons[i] - lons[0] + 180) % 360 - 180)
        return math.hypot(meridian * dlat, prime * math.cos(lat) * dlon)
    return math.sqrt(step(1) * step(2))


@dataclass(frozen=True)
class GsdPlan:
    """How the network reads an image: ``scale`` model pixels per input pixel (1: as it is; 3: the
    image is 3× coarser than the model's GSD and is upsampled for the network)."""

    scale: float
    input_gsd: Optional[float]
    model_gsd: Optional[float]

    @property
    def resampled(self) -> bool:
        return self.scale != 1.0

    def describe(self) -> Optional[str]:
        """One sentence for the user when the image's GSD is not the model's, else None."""
        if self.input_gsd is None or self.model_gsd is None:
            return None
        ratio = self.input_gsd / self.model_gsd
        if abs(ratio - 1) <= TOLERANCE:
            return None
        how = "coarser" if ratio > 1 else "finer"
        times = ratio if ratio > 1 else 1 / ratio
        action = (f"resampling to {self.model_gsd:g} m" if self.resampled
                  else "reading it at its own GSD (--gsd native)")
        return (f"this image is {times:.1f}× {how} than the model's training data "
                f"({self.input_gsd:g} m vs {self.model_gsd:g} m); {action}")


def plan_gsd(ds: rasterio.io.DatasetReader, model_gsd: Optional[float], mode: str = "auto",
             input_gsd: Optional[float] = None) -> GsdPlan:
    """Decide the resampling scale for ``ds``.

    ``mode``: ``auto`` (resample when the GSDs differ by more than 25 %), ``native`` (never) or a
    number of metres (read at that GSD).  ``input_gsd`` overrides the raster's own GSD (needed for
    rasters without georeferencing).
    """
    if input_gsd is not None and input_gsd <= 0:
        raise InputError(f"--input-gsd must be a positive number of metres (got {input_gsd})")
    own = input_gsd if input_gsd is not None else raster_gsd(ds)
    if mode == "native":
        return GsdPlan(1.0, own, model_gsd)
    if mode == "auto":
        target = model_gsd
    else:
        try:
            target = float(mode)
        except ValueError:
            raise InputError(f"--gsd must be auto, native or a number of metres (got {mode!r})") \
                from None
        if target <= 0:
            raise InputError(f"--gsd must be a positive number of metres (got {mode})")
    if target is None:
        return GsdPlan(1.0, own, model_gsd)
    if own is None:
        raise InputError(
            f"{ds.name} has no georeferencing, so its ground sampling distance is unknown and the "
            f"model (trained at {target:g} m) cannot read it at its own scale; give the pixel size "
            f"with --input-gsd METRES (INPUT_GSD in QGIS), or run it as it is with --gsd native")
    ratio = own / target
    if max(ratio, 1 / ratio) > MAX_RATIO:
        how = "coarser" if ratio > 1 else "finer"
        raise InputError(
            f"this image ({own:g} m) is {max(ratio, 1 / ratio):.1f}× {how} than the model's "
            f"{target:g} m, more than the {MAX_RATIO:g}× resampling can bridge; use a model "
            f"trained near {own:g} m, resample the image first (gdalwarp -tr), or force it with "
            f"--gsd native")
    if mode == "auto" and abs(ratio - 1) <= TOLERANCE:
        return GsdPlan(1.0, own, model_gsd)
    return GsdPlan(ratio, own, target)
