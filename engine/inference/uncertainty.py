"""Per-pixel uncertainty from the stitched class probabilities (``predict --uncertainty``).

Computed block by block from the same scores that give the class raster, so it costs no second
pass.  Stored as uint8: 0 = certain, 254 = the most unsure the measure can be, 255 = nodata.

- ``margin``: 1 − (p₁ − p₂), the gap between the two most likely classes (a tie is 254);
- ``entropy``: −Σ p log p, divided by log K so it spans 0..1 whatever the number of classes.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..compute import backend as xp

MEASURES = ("margin", "entropy")
SCALE = 254  # uint8 uncertainty = round(u * 254); 255 is nodata
NODATA = 255


def check_measure(measure: str) -> str:
    """``measure`` when it is known; otherwise an error naming the choices."""
    from ..jobs import InputError
    if measure not in MEASURES:
        raise InputError(f"uncertainty measure must be one of {', '.join(MEASURES)} "
                         f"(got {measure!r})")
    return measure


def uncertainty(scores: Any, measure: str = "margin") -> Any:
    """K×h×w class probabilities (torch or numpy) → h×w uncertainty in 0..1 (float32)."""
    k = scores.shape[0]
    if k < 2:
        return xp.zeros(scores.shape[1:], getattr(scores, "device", None))
    if measure == "entropy":
        if xp.is_tensor(scores):
            p = scores.clamp(min=1e-12)
            return -(p * p.log()).sum(0) / math.log(k)
        p = np.clip(scores, 1e-12, None)
        return -(p * np.log(p)).sum(0) / math.log(k)
    if xp.is_tensor(scores):
        top = scores.topk(2, dim=0).values
        return 1.0 - (top[0] - top[1])
    top = np.partition(scores, k - 2, axis=0)[k - 2:]
    return 1.0 - (top[1] - top[0])


def to_uint8(scores: Any, valid: Any, measure: str = "margin") -> Any:
    """The uint8 uncertainty band of a block (255 where ``valid`` is False), 1×h×w."""
    u = xp.to_uint8(uncertainty(scores, measure).clip(0.0, 1.0) * SCALE)
    u[~valid] = NODATA
    return u[None]
