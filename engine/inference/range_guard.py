"""Input value-range guard: catch a raster on another pixel scale before it becomes a one-class map.

The card says what the model reads (its input type and the mean/std of its normalisation, in
raw pixel units); the sampled statistics of the input say what it holds.  When the input's
bright end (99th percentile) is more than :data:`FACTOR` times below or above what the model
expects (mean + 2 σ), the run stops with one sentence naming the fix — usually
``--input-scale``: ``1`` for 0–1 reflectance, ``10000`` for Sentinel-2 L2A, ``255`` for 8-bit.
An input of the card's own integer type is on the model's scale by construction and is not
checked (a dark scene is not another scale).  When the user already chose the scale or
normalisation, the same finding is only a note.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from ..formats.definition import native_scale
from ..io.radiometry import BandStats
from ..jobs import InputError

FACTOR = 8.0  # ×8 off the model's range: certainly another pixel scale, not a dark scene
# (bright end up to, full scale): reflectance passes 1.0 (and 10000 × it) over bright clouds
FULL_SCALES = ((2.0, 1.0), (100.0, 100.0), (255.0, 255.0), (1000.0, 1000.0), (4095.0, 4095.0),
               (16000.0, 10000.0))


def range_mismatch(group: Mapping[str, Any], stats: BandStats) -> Optional[str]:
    """The sentence for an input whose values are far off the card group's range, else None."""
    if group.get("normalisation", "dataset") != "dataset":
        return None  # the model normalises each image by its own statistics
    mean = np.asarray(group["mean"], np.float64)
    std = np.asarray(group["std"], np.float64)
    expected = mean + 2 * std
    high = stats.percentile(0.99)
    if expected.shape != high.shape or np.any(expected <= 0):
        return None
    ratio = float(np.median(np.maximum(high, 1e-9) / expected))
    if 1 / FACTOR <= ratio <= FACTOR:
        return None
    scale = native_scale(group)
    fix = full_scale(float(np.max(high)))
    looks = ("0–1 reflectance" if fix == 1 else f"values up to about {fix:g}")
    return (f"the input's values reach {float(np.median(high)):.4g} (99th percentile) but the "
            f"model reads about 0–{float(np.median(expected)):.4g} "
            f"({group.get('dtype', 'its')} input, pixel {scale:g} = 1.0): it is "
            f"{ratio if ratio > 1 else 1 / ratio:.0f}× {'brighter' if ratio > 1 else 'darker'}. "
            f"If it holds {looks}, give --input-scale {fix:g}; or give the model's --mean/--std "
            f"for this imagery")


def full_scale(high: float) -> float:
    """The usual full-scale pixel value (1, 255, 10000 …) of data whose bright end is ``high``:
    the smallest that holds it (reflectance × 10000 reaches 3000–6000 without clouds)."""
    return next((scale for limit, scale in FULL_SCALES if high <= limit), 65535.0)


def check_range(card: Mapping[str, Any], group: str, stats: BandStats, dtype: str
                ) -> Optional[str]:
    """Raise :class:`InputError` with the fix when the input (of data type ``dtype``) is on
    another pixel scale; when the user already set the scale or normalisation, return the
    finding as a note instead."""
    spec = card["inputs"][group]
    if dtype == spec.get("dtype") and dtype.startswith(("uint", "int")):
        return None  # the same integer type: the same pixel scale, maybe a dark or bright scene
    message = range_mismatch(spec, stats)
    if message is None:
        return None
    chosen = card.get("definition") or {}
    if any(k in chosen for k in ("input_scale", "mean", "scale")):
        return message.replace("If it holds", "Check the scale you gave: if it holds")
    raise InputError(message)
