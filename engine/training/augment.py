"""Augmentations for sensor shift: what changes when the same ground is seen by another camera.

Random scale (another GSD), blur (another optic or resampling), noise, per-band gain and offset
(another calibration or illumination) and gamma (another tone curve).  For change detection each
date is drawn independently, so a model learns that radiometric differences between the dates
are not change.  Every draw comes from the caller's generator (reproducible epochs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence, Tuple

import numpy as np

from ..io.resample import interpolation_matrix

SCALE_RANGE = (0.5, 2.0)


@dataclass(frozen=True)
class SensorShift:
    """Strengths of the photometric draws (0 turns one off)."""

    gain: float = 0.2  # per-band gain in [1/(1+g), 1+g], offset ±g·std
    gamma: float = 0.3  # gamma in [1/(1+γ), 1+γ]
    blur: float = 1.2  # Gaussian σ up to this many pixels (drawn in half the windows)
    noise: float = 0.05  # additive noise σ up to this share of the band's std


@dataclass(frozen=True)
class SensorAugment:
    """How often sensor-shift augmentation is drawn: the scale (another GSD) and the
    radiometry (``shift``) each with their own probability per window, for the first
    ``share`` of the epochs; the remaining epochs see the training imagery as it is."""

    scale_p: float = 1.0
    shift_p: float = 1.0
    share: float = 1.0
    shift: SensorShift = field(default_factory=SensorShift)

    def epochs(self, total: int) -> int:
        """Epochs (of ``total``) trained with the augmentation, at least one."""
        return max(1, min(total, math.ceil(total * self.share - 1e-9)))


def random_scale(rng: np.random.Generator, low: float = SCALE_RANGE[0],
                 high: float = SCALE_RANGE[1]) -> float:
    """A zoom factor, log-uniform in [low, high] (as likely to halve as to double)."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def resize_window(pixels: np.ndarray, labels: np.ndarray, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """A square window (C×S×S pixels, S×S labels) resized to ``size``: pixels by antialiased
    linear interpolation, labels by nearest neighbour."""
    s = pixels.shape[-1]
    if s == size:
        return pixels, labels
    m = interpolation_matrix(size, s)
    out = (m @ pixels.astype(np.float32) @ m.T).astype(np.float32)
    idx = np.minimum(((np.arange(size) + 0.5) * s / size).astype(int), s - 1)
    return out, labels[idx[:, None], idx[None, :]]


def _gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """n×n blur matrix (reflecting edges, rows summing to one)."""
    radius = max(1, int(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    m = np.zeros((n, n), np.float32)
    for offset, weight in zip(range(-radius, radius + 1), k):
        cols = np.arange(n) + offset
        cols = np.where(cols < 0, -cols - 1, cols)
        cols = np.where(cols >= n, 2 * n - cols - 1, cols)
        np.add.at(m, (np.arange(n), np.clip(cols, 0, n - 1)), weight)
    return m


def sensor_shift(pixels: np.ndarray, mean: Sequence[float], std: Sequence[float],
                 rng: np.random.Generator, shift: SensorShift = SensorShift()) -> np.ndarray:
    """``pixels`` (C×H×W, in the space whose band statistics are ``mean``/``std``) as if seen
    by another sensor: gamma on the ±3σ range, per-band gain/offset, blur, noise."""
    m = np.asarray(mean, np.float32)[:, None, None]
    s = np.asarray(std, np.float32)[:, None, None]
    c = pixels.shape[0]
    out = pixels.astype(np.float32, copy=True)
    if shift.gamma > 0:
        gamma = np.exp(rng.uniform(-np.log1p(shift.gamma), np.log1p(shift.gamma)))
        low, span = m - 3 * s, 6 * s
        u = np.clip((out - low) / span, 0.0, 1.0)
        out = low + span * u ** np.float32(gamma)
    if shift.gain > 0:
        g = np.exp(rng.uniform(-np.log1p(shift.gain), np.log1p(shift.gain), (c, 1, 1)))
        offset = rng.uniform(-shift.gain, shift.gain, (c, 1, 1)) * s
        out = (out - m) * g.astype(np.float32) + m + offset.astype(np.float32)
    if shift.blur > 0 and rng.random() < 0.5:
        sigma = rng.uniform(0.3, shift.blur)
        by, bx = (_gaussian_matrix(n, sigma) for n in out.shape[1:])
        out = by @ out @ bx.T
    if shift.noise > 0:
        sigma = rng.uniform(0, shift.noise) * s
        out = out + rng.normal(0, 1, out.shape).astype(np.float32) * sigma
    return out.astype(np.float32)
