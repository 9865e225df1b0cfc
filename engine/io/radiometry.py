"""Radiometry that travels: per-image band statistics, normalisation modes, histogram matching.

A card input group names its ``normalisation``:

- ``dataset``: standardise with the training data's band mean/std (the card's ``mean``/``std``);
- ``image``: first standardise each image with its own band mean/std, so an image of another
  brightness or sensor gain maps to the same range, then apply the card's statistics (computed
  on standardised training images, so close to 0/1);
- ``percentile``: first stretch each band's 2–98 % range of the image to 0–1, then the card's.

Every mode is a per-band affine map, so the pipeline's ``normalise`` stays one multiply-add.
Image statistics are estimated streaming from a fixed, evenly spread sample of windows (the same
windows every time: two reads give the same numbers), never from the whole raster in memory.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..jobs import InputError
from .rasters import WindowReader

NORMALISATIONS = ("dataset", "image", "percentile")
SAMPLE_WINDOWS = 25
SAMPLE_TILE = 256
QUANTILES = np.linspace(0.0, 1.0, 257)
PERCENTILE_RANGE = (0.02, 0.98)


@dataclass(frozen=True)
class BandStats:
    """Per-band statistics of an image's valid pixels (each a list, one value per band)."""

    mean: List[float]
    std: List[float]
    quantiles: np.ndarray  # len(QUANTILES) × bands

    def percentile(self, q: float) -> np.ndarray:
        """Per-band value at quantile ``q`` (0..1), interpolated from the stored quantiles."""
        return np.array([np.interp(q, QUANTILES, self.quantiles[:, b])
                         for b in range(self.quantiles.shape[1])])

    @classmethod
    def of(cls, pixels: np.ndarray) -> "BandStats":
        """Statistics of ``pixels`` (bands × N valid pixels)."""
        if pixels.shape[1] == 0:
            raise InputError("the image has no valid pixels in its sampled windows (nodata "
                             "everywhere?); check its nodata value or mask")
        p = pixels.astype(np.float64)
        std = np.maximum(p.std(1), 1e-6)
        return cls([float(v) for v in p.mean(1)], [float(v) for v in std],
                   np.quantile(p, QUANTILES, axis=1))


def sample_positions(width: int, height: int, tile: int = SAMPLE_TILE,
                     count: int = SAMPLE_WINDOWS) -> List[Tuple[int, int]]:
    """Top-left corners of up to ``count`` windows spread evenly over the raster."""
    n = max(1, int(math.isqrt(count)))
    xs = sorted({int(round(v)) for v in np.linspace(0, max(0, width - tile), n)})
    ys = sorted({int(round(v)) for v in np.linspace(0, max(0, height - tile), n)})
    return [(x, y) for y in ys for x in xs]


def sample_pixels(readers: Sequence[WindowReader], tile: int = SAMPLE_TILE,
                  count: int = SAMPLE_WINDOWS) -> List[np.ndarray]:
    """Valid pixels (bands × N) of each reader over the same sampled windows; a pixel counts when
    it is valid in every reader (for two dates: where both have data)."""
    ds = readers[0].ds
    out: List[List[np.ndarray]] = [[] for _ in readers]
    for x, y in sample_positions(ds.width, ds.height, tile, count):
        wins = [WindowReader.read(r, x, y, tile) for r in readers]
        valid = np.logical_and.reduce([w.valid for w in wins])
        for k, w in enumerate(wins):
            out[k].append(w.pixels[:, valid])
    return [np.concatenate(parts, axis=1) for parts in out]


def image_statistics(reader: WindowReader) -> BandStats:
    """Band statistics of one image from a fixed sample of windows."""
    return BandStats.of(sample_pixels([reader])[0])


def check_mode(mode: str) -> str:
    """Return ``mode`` when it is a known normalisation, else explain."""
    if mode not in NORMALISATIONS:
        raise InputError(f"normalisation must be one of {', '.join(NORMALISATIONS)} "
                         f"(got {mode!r})")
    return mode


def pre_affine(mode: str, stats: Optional[BandStats], bands: int) -> Tuple[np.ndarray, np.ndarray]:
    """(offset, scale) of the per-image step of ``mode``: ``x' = (x - offset) / scale``."""
    if check_mode(mode) == "dataset":
        return np.zeros(bands), np.ones(bands)
    if stats is None:
        raise ValueError(f"normalisation '{mode}' needs the image's statistics")
    if mode == "image":
        return np.asarray(stats.mean), np.asarray(stats.std)
    low, high = (stats.percentile(q) for q in PERCENTILE_RANGE)
    return low, np.maximum(high - low, 1e-6)


def effective_affine(group: Mapping[str, Any], stats: Optional[BandStats]
                     ) -> Tuple[List[float], List[float]]:
    """The (mean, std) that ``normalise`` applies to raw pixels of an image for a card group:
    the image's own step (``pre_affine``) followed by the card's standardisation."""
    mode = group.get("normalisation", "dataset")
    cm, cs = np.asarray(group["mean"], np.float64), np.asarray(group["std"], np.float64)
    a, b = pre_affine(mode, stats, len(cm))
    return [float(v) for v in a + cm * b], [float(v) for v in cs * b]


def needs_statistics(group: Mapping[str, Any]) -> bool:
    """True when a card group normalises each image with its own statistics."""
    return group.get("normalisation", "dataset") != "dataset"


def histogram_matcher(source: BandStats, reference: BandStats):
    """A function mapping pixels (bands × …) of ``source``'s image so that each band's
    distribution follows ``reference`` (quantile mapping)."""
    qs, qr = source.quantiles, reference.quantiles
    if qs.shape != qr.shape:
        raise InputError("histogram matching needs images with the same bands")

    def match(pixels: np.ndarray) -> np.ndarray:
        out = np.empty_like(pixels)
        for b in range(pixels.shape[0]):
            xp, idx = np.unique(qs[:, b], return_index=True)
            out[b] = np.interp(pixels[b], xp, qr[idx, b]) if len(xp) > 1 else pixels[b]
        return out
    return match


def shift_in_sigma(stats: BandStats, mean: Sequence[float], std: Sequence[float]) -> float:
    """Largest per-band distance between an image's band means and training means, in training
    standard deviations."""
    m, s = np.asarray(mean, np.float64), np.maximum(np.asarray(std, np.float64), 1e-9)
    return float(np.max(np.abs(np.asarray(stats.mean) - m) / s))
