"""Ground sampling distance: read it from a raster and decide how a model sees the raster.

A model is trained at one GSD (``gsd_m`` in its card).  An image of another GSD is read
resampled to the model's GSD window by window (:mod:`engine.io.resample`) when the two differ by
more than :data:`TOLERANCE`; the output always stays on the input's grid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import rasterio
from rasterio.warp import transform as transform_points

from ..jobs import InputError

TOLERANCE = 0.25  # relative GSD difference below which the network reads the raster as it is
MAX_RATIO = 8.0  # beyond this the model would see another kind of imagery, not another GSD
EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG): metres per radian of a great circle


def raster_gsd(ds: rasterio.io.DatasetReader) -> Optional[float]:
    """Mean pixel size of ``ds`` in metres, or None when it is not georeferenced.

    Projected CRSs use their linear unit; geographic CRSs are converted at the raster's central
    latitude (a degree of longitude shrinks with its cosine).
    """
    if ds.crs is None or ds.transform.is_identity:
        return None
    t = ds.transform
    px, py = math.hypot(t.a, t.d), math.hypot(t.b, t.e)
    if ds.crs.is_geographic:
        left, bottom, right, top = ds.bounds
        lat = math.radians((bottom + top) / 2)
        if ds.crs.to_epsg() != 4326:  # other datums: their latitude is still close enough
            _, (lat_deg,) = transform_points(ds.crs, "EPSG:4326", [(left + right) / 2],
                                             [(bottom + top) / 2])
            lat = math.radians(lat_deg)
        metres_per_degree = math.radians(1) * EARTH_RADIUS_M
        return math.sqrt(px * metres_per_degree * math.cos(lat) * py * metres_per_degree)
    return math.sqrt(px * py) * float(ds.crs.linear_units_factor[1])


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
