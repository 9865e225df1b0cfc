"""Two views of a window with tracked pixel correspondence, and the RoIs they share.

The geometry (random-resized crops, flips, 90° rotations) goes through an index map alongside
the pixels, so every view pixel knows its source pixel; the photometric jitter of view 2 works on
normalised bands.  Numbers and readings: the notes of :mod:`engine.training.pretrain`.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

SCALE = (0.4, 1.0)               # random-resized-crop area fraction
RATIO = (3 / 4, 4 / 3)           # … and aspect ratio
HUE_DEG, SAT, VALUE = 60.0, 0.05, 0.3
EXTRA_BC, SALT = 0.1, 0.001


def random_resized_box(rng: np.random.Generator, height: int, width: int,
                       scale: Tuple[float, float] = SCALE,
                       ratio: Tuple[float, float] = RATIO) -> Tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop covering ``scale`` of the area with aspect in ``ratio``
    (10 tries, then the largest centred crop of a legal aspect)."""
    area = height * width
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_r))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif aspect > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def sample_positions(start: int, length: int, size: int) -> np.ndarray:
    """Source row (or column) of each of ``size`` output pixels resizing ``length`` pixels from
    ``start``: the pixel containing the output pixel's centre (nearest, as for the index map)."""
    return start + ((2 * np.arange(size) + 1) * length) // (2 * size)


def crop_resize(array: np.ndarray, box: Tuple[int, int, int, int], size: int,
                mode: str) -> np.ndarray:
    """Cut ``box`` (top, left, h, w) out of a …×H×W array and resize it to ``size``².

    ``nearest`` picks exactly the source pixels of :func:`sample_positions` (index maps);
    ``bilinear`` interpolates (align_corners=False, i.e. at the same pixel centres).
    """
    top, left, h, w = box
    if mode == "nearest":
        rows, cols = sample_positions(top, h, size), sample_positions(left, w, size)
        return array[..., rows[:, None], cols[None, :]]
    part = torch.from_numpy(np.ascontiguousarray(array[..., top:top + h, left:left + w]))
    lead = part.shape[:-2]
    out = F.interpolate(part.reshape(1, -1, h, w).float(), size=(size, size), mode="bilinear",
                        align_corners=False)
    return out.reshape(*lead, size, size).numpy()


def flip_rotate(array: np.ndarray, flip: str, k: int) -> np.ndarray:
    """Flip (``""``, ``"h"``, ``"v"`` or ``"hv"``) then rotate by k×90° the last two axes."""
    if "h" in flip:
        array = array[..., :, ::-1]
    if "v" in flip:
        array = array[..., ::-1, :]
    return np.ascontiguousarray(np.rot90(array, k, axes=(-2, -1)))


def _grey_rotation(theta: float) -> np.ndarray:
    """Rotation of 3-vectors by ``theta`` about the (1, 1, 1) axis (a hue shift)."""
    u = np.ones(3) / math.sqrt(3)
    cross = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    return (math.cos(theta) * np.eye(3) + math.sin(theta) * cross
            + (1 - math.cos(theta)) * np.outer(u, u))


def _gaussian_blur(x: np.ndarray, k: int) -> np.ndarray:
    sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8                   # OpenCV's default for kernel k
    t = torch.arange(k, dtype=torch.float32) - (k - 1) / 2
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    c = x.shape[0]
    y = torch.from_numpy(np.ascontiguousarray(x))[None]
    y = F.pad(y, (k // 2,) * 4, mode="reflect")
    y = F.conv2d(y, g.view(1, 1, 1, k).repeat(c, 1, 1, 1), groups=c)
    y = F.conv2d(y, g.view(1, 1, k, 1).repeat(c, 1, 1, 1), groups=c)
    return y[0].numpy()


def photometric(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """View-2 colour augmentation of normalised bands C×H×W (see the package notes)."""
    x = x.astype(np.float32, copy=True)
    c = x.shape[0]
    if rng.random() < 0.8:
        if c >= 3:
            rgb = x[:3].reshape(3, -1)
            rgb = _grey_rotation(math.radians(rng.uniform(-HUE_DEG, HUE_DEG))) @ rgb
            grey = rgb.mean(0, keepdims=True)
            rgb = grey + (rgb - grey) * (1 + rng.uniform(-SAT, SAT)) + rng.uniform(-VALUE, VALUE)
            x[:3] = rgb.reshape(x[:3].shape)
        for b in range(3 if c >= 3 else 0, c):
            x[b] = x[b] * (1 + rng.uniform(-EXTRA_BC, EXTRA_BC)) + rng.uniform(-EXTRA_BC, EXTRA_BC)
            salt = rng.random(x.shape[1:]) < SALT
            x[b][salt] = x[b].max()
    if rng.random() < 0.1:
        x = np.repeat(x[int(rng.integers(c))][None], c, axis=0)
    if rng.random() < 0.5:
        x = _gaussian_blur(x, int(rng.choice([3, 5, 7])))
    return x.astype(np.float32)


def two_views(pixels: np.ndarray, index: np.ndarray, crop: int, rng: np.random.Generator, *,
              jitter: bool = True, resample: str = "bilinear"
              ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two views (C×crop×crop) of a window and their index maps (crop×crop source indexes).

    View 1: random-resized crop.  View 2: random-resized crop, flip (none with p 2/5, else h, v
    or both), rotation by 90°·k (p 0.8) and, when ``jitter``, :func:`photometric`.  The index maps
    go through exactly the same geometry with nearest sampling; ``resample="nearest"`` does the
    same to the pixels (for tests: then ``view[:, i, j] == window[:, index // W, index % W]``).
    """
    h, w = index.shape
    box1, box2 = random_resized_box(rng, h, w), random_resized_box(rng, h, w)
    v1 = crop_resize(pixels, box1, crop, resample)
    i1 = crop_resize(index, box1, crop, "nearest")
    flip = ("", "", "h", "v", "hv")[int(rng.integers(5))]
    k = int(rng.integers(1, 4)) if rng.random() < 0.8 else 0
    v2 = flip_rotate(crop_resize(pixels, box2, crop, resample), flip, k)
    i2 = flip_rotate(crop_resize(index, box2, crop, "nearest"), flip, k)
    if jitter:
        v2 = photometric(v2, rng)
    return (np.ascontiguousarray(v1, dtype=np.float32), np.ascontiguousarray(v2, dtype=np.float32),
            np.ascontiguousarray(i1), np.ascontiguousarray(i2))


def _inner_positions(index: np.ndarray, patch_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Valid positions whose RoI box (``patch_size``+1 px, centred) lies inside the view:
    (index values, flat positions), one position per index value (its first occurrence)."""
    h, w = index.shape
    half = patch_size // 2
    inner = np.zeros((h, w), dtype=bool)
    inner[half:h - patch_size + half, half:w - patch_size + half] = True
    inner &= index >= 0
    flat = np.flatnonzero(inner)
    values, first = np.unique(index.ravel()[flat], return_index=True)
    return values, flat[first]


def match_patches(i1: np.ndarray, i2: np.ndarray, patch_size: int, patch_num: int,
                  rng: np.random.Generator) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """Centres (patch_num×2, row/col) of matched RoIs in each view, or None when the views share
    no source pixel away from their borders.

    After each pick, the candidates whose boxes would overlap the chosen box in either view are
    removed; if fewer than ``patch_num`` disjoint boxes exist, the rest are drawn from all
    matched pixels.
    """
    v1, p1 = _inner_positions(i1, patch_size)
    v2, p2 = _inner_positions(i2, patch_size)
    _, a, b = np.intersect1d(v1, v2, assume_unique=True, return_indices=True)
    if not len(a):
        return None
    w1, w2 = i1.shape[1], i2.shape[1]
    y1, x1 = np.divmod(p1[a], w1)
    y2, x2 = np.divmod(p2[b], w2)
    alive = np.ones(len(a), dtype=bool)
    picks: List[int] = []
    while len(picks) < patch_num and alive.any():
        j = int(rng.choice(np.flatnonzero(alive)))
        picks.append(j)
        alive &= ~((np.abs(y1 - y1[j]) <= patch_size) & (np.abs(x1 - x1[j]) <= patch_size))
        alive &= ~((np.abs(y2 - y2[j]) <= patch_size) & (np.abs(x2 - x2[j]) <= patch_size))
    while len(picks) < patch_num:
        picks.append(int(rng.integers(len(a))))
    sel = np.asarray(picks)
    return (np.stack([y1[sel], x1[sel]], 1).astype(np.int64),
            np.stack([y2[sel], x2[sel]], 1).astype(np.int64))
