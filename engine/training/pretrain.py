"""``engine.training.pretrain``: GLCNet self-supervised pre-training on unlabelled rasters.

Li et al., IEEE TGRS 60 (2022) — "global style and local matching contrastive learning" — built
from ``docs/seed-models.md`` §3 (no seed code used).  The result is a model file with
``task: "pretrained"`` (no classes) that only serves ``train --arch ARCH --init FILE``.

Per sample: a random window of one of the rasters (``window`` px, nodata-heavy windows skipped)
gets an index map holding each source pixel's flat index (−1 where invalid).  Two views are cut
from it (random-resized crop, scale 0.4–1, aspect 3/4–4/3, resized to ``crop``²: pixels bilinear,
index map nearest); view 2 is also flipped / rotated by 90° (the index map follows) and
photometrically jittered.  ``patch_num`` source pixels present in both views, at least
``patch_size/2`` from the view borders and (when possible) with non-overlapping patches, give the
matched RoIs.

The network (any registered segmentation network with ``ssl_features(image) -> (deep, map)``:
``glcnet`` or ``unet``) is built with ``num_classes = embedding`` (64): its output map is the
per-pixel embedding.  Two projection heads that are *not* saved with the network:

* global style: [channel mean, channel variance] of ``deep`` (2C) → MLP 2C→C→ReLU→64 → NT-Xent
  over the batch (positive: the other view of the same window);
* local matching: RoI max-pool (torchvision ``RoIPool`` semantics, scale 1, output
  ``patch_size``²) of the embedding maps at the matched boxes → spatial mean → MLP K→K→ReLU→64 →
  NT-Xent over all local vectors of the batch (positive: the same source pixel in the other view).

Loss = λ·global + (1−λ)·local (λ = 0.5, τ = 0.5).  Adam (β 0.9, 0.99, weight decay 1e-5) with a
per-step cosine decay to 4e-8; ``<out>.last.ckpt`` after every epoch (atomic, ``weights_only``
loadable) and exact ``resume``; the model file holds the network of the epoch with the lowest
mean loss (as the seed keeps its best-loss checkpoint); DistributedDataParallel under
``torchrun`` (rank 0 writes; NT-Xent negatives are those of the rank's own batch).

Readings where the specification is silent or loose (also in the report of the work):

* Photometric jitter works on normalised values (z-scores, any dtype): the seed's OpenCV HSV
  shift of the first three bands (hue ±30 of 180, sat ±5, value ±15 of 255) becomes a rotation of
  the three bands about their grey axis by ±60°, a chroma scaling ±5 % and a value offset ±0.3;
  the other bands (all bands when there are fewer than three) get brightness/contrast ±0.1 and
  salt noise (p = 0.001, set to the band's window maximum).
* NT-Xent is SimCLR's: for each of the 2N vectors, cross-entropy of its positive against every
  other vector (the positive is in the denominator as in SimCLR); masks are built per call, so
  any batch size works (``drop_last`` is not needed; a batch of one gives 0 loss).
* Both views go through the network as one batch of 2B (BatchNorm sees both views).
* A RoI box of ``patch_size`` centred on a matched pixel spans ``patch_size + 1`` pixels
  (inclusive corners, as RoIPool rounds them); "non-overlapping" means those boxes are disjoint
  in both views; when fewer than ``patch_num`` disjoint boxes exist, the rest are drawn from all
  matched pixels (overlap allowed), and when none exist the two views are drawn again.
* The source window defaults to ``crop × 8/7`` (the seed's 256 → 224); ``samples_per_epoch``
  defaults to the number of non-overlapping windows in the rasters.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import __version__
from ..compute.devices import resolve_device
from ..jobs import CancelledFn, InputError, Job, ProgressFn, check_outputs
from ..formats.modelfile import load_model, save_model
from ..models import architecture, build
from .checkpoints import PRETRAIN_FORMAT, checkpoint_path, load_checkpoint, save_checkpoint
from .distributed import all_sum, barrier, init_distributed

COMMAND = "pretrain"
HELP = "self-supervised pre-training (GLCNet) on unlabelled rasters, for 'train --init'"

SCALE = (0.4, 1.0)               # random-resized-crop area fraction
RATIO = (3 / 4, 4 / 3)           # … and aspect ratio
MIN_VALID = 0.5                  # windows with fewer valid pixels are skipped (redrawn)
HUE_DEG, SAT, VALUE = 60.0, 0.05, 0.3
EXTRA_BC, SALT = 0.1, 0.001
PROJ_DIM = 64


# ---- two views with tracked correspondence -----------------------------------------------------

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
    """View-2 colour augmentation of normalised bands C×H×W (see the module notes)."""
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


# ---- data -------------------------------------------------------------------------------------

class TwoViewDataset(torch.utils.data.Dataset):
    """Random windows of the rasters as pairs of views with matched RoI centres.

    Every draw comes from a generator seeded by (seed, epoch, index): epochs are reproducible
    and resume is exact.  Items: ``v1``, ``v2`` (C×crop×crop), ``c1``, ``c2`` (patch_num×2).
    """

    def __init__(self, images: Sequence[str], window: int, crop: int,
                 stats: Tuple[List[float], List[float]], patch_size: int, patch_num: int,
                 length: int, seed: int = 0) -> None:
        self.images, self.window, self.crop = list(images), window, crop
        self.mean = np.asarray(stats[0], np.float32)[:, None, None]
        self.std = np.asarray(stats[1], np.float32)[:, None, None]
        self.patch_size, self.patch_num = patch_size, patch_num
        self.length, self.seed, self.epoch = length, seed, 0
        self._readers = None
        self.sizes = []
        from ..io.rasters import open_raster
        for path in self.images:
            with open_raster(path) as ds:
                self.sizes.append((ds.width, ds.height))
        area = np.array([(w - window + 1) * (h - window + 1) for w, h in self.sizes], float)
        self.weights = area / area.sum()

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _reader(self, i: int):
        if self._readers is None:  # opened lazily: each DataLoader worker gets its own handles
            from ..io.rasters import WindowReader, data_band_indexes, open_raster
            self._readers = []
            for path in self.images:
                ds = open_raster(path)
                self._readers.append(WindowReader(ds, data_band_indexes(ds) or [1]))
        return self._readers[i]

    def close(self) -> None:
        for r in self._readers or []:
            r.ds.close()
        self._readers = None

    def read_window(self, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        """A normalised window (invalid pixels 0) and its index map (−1 where invalid)."""
        best = None
        for _ in range(20):
            s = int(rng.choice(len(self.images), p=self.weights))
            w, h = self.sizes[s]
            x = int(rng.integers(0, w - self.window + 1))
            y = int(rng.integers(0, h - self.window + 1))
            win = self._reader(s).read(x, y, self.window)
            frac = float(win.valid.mean())
            if best is None or frac > best[0]:
                best = (frac, win)
            if frac >= MIN_VALID:
                break
        win = best[1]
        pixels = (win.pixels - self.mean) / self.std * win.valid[None]
        index = np.arange(self.window * self.window, dtype=np.int64).reshape(self.window,
                                                                            self.window)
        index[~win.valid] = -1
        return pixels.astype(np.float32), index

    def __getitem__(self, i: int) -> Dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        for attempt in range(40):
            if attempt % 4 == 0:
                pixels, index = self.read_window(rng)
            v1, v2, i1, i2 = two_views(pixels, index, self.crop, rng)
            found = match_patches(i1, i2, self.patch_size, self.patch_num, rng)
            if found is not None:
                break
        else:
            raise InputError(f"could not find a pixel seen by both views away from their borders "
                             f"in 40 tries (crop {self.crop}, patch size {self.patch_size}); "
                             f"lower --patch-size or check the images' nodata")
        return {"v1": torch.from_numpy(v1), "v2": torch.from_numpy(v2),
                "c1": torch.from_numpy(found[0]), "c2": torch.from_numpy(found[1])}


# ---- losses -----------------------------------------------------------------------------------

def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's NT-Xent of N positive pairs (z1[i], z2[i]), masks built for this N.

    Cosine similarities / τ; each of the 2N vectors is classified against all 2N−1 others
    (itself excluded, its positive included), mean over the 2N anchors.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.t() / temperature
    eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    target = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
    return F.cross_entropy(sim.masked_fill(eye, float("-inf")), target)


def style_vector(deep: torch.Tensor) -> torch.Tensor:
    """[channel mean, channel variance over positions] of B×C×h×w features → B×2C."""
    flat = deep.float().flatten(2)
    return torch.cat([flat.mean(2), flat.var(2, unbiased=False)], dim=1)


def roi_max_pool(features: torch.Tensor, batch_index: torch.Tensor, centres: torch.Tensor,
                 patch_size: int) -> torch.Tensor:
    """RoIPool (scale 1, output ``patch_size``²) of boxes of ``patch_size`` centred on
    ``centres`` (N×2 row/col) in ``features[batch_index]`` → N×C×patch_size×patch_size.

    As torchvision rounds the corners and counts them in, each box spans ``patch_size + 1``
    pixels starting at ``centre − patch_size // 2``; the bins are those of adaptive max pooling.
    """
    r = patch_size + 1
    steps = torch.arange(r, device=features.device)
    top = (centres[:, 0] - patch_size // 2)[:, None] + steps
    left = (centres[:, 1] - patch_size // 2)[:, None] + steps
    crops = features[batch_index[:, None, None], :, top[:, :, None], left[:, None, :]]
    return F.adaptive_max_pool2d(crops.permute(0, 3, 1, 2), patch_size)


def mlp(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, cout))


class GLCObjective(nn.Module):
    """The network plus the two projection heads; ``forward`` returns [total, global, local]."""

    def __init__(self, network: nn.Module, deep_channels: int, embedding: int, patch_size: int,
                 lam: float = 0.5, temperature: float = 0.5) -> None:
        super().__init__()
        self.network = network
        self.global_head = mlp(2 * deep_channels, deep_channels, PROJ_DIM)
        self.local_head = mlp(embedding, embedding, PROJ_DIM)
        self.patch_size, self.lam, self.temperature = patch_size, lam, temperature

    def forward(self, v1: torch.Tensor, v2: torch.Tensor, c1: torch.Tensor,
                c2: torch.Tensor) -> torch.Tensor:
        b, p = c1.shape[:2]
        deep, emb = self.network.ssl_features(torch.cat([v1, v2]))
        z = self.global_head(style_vector(deep))
        global_loss = nt_xent(z[:b], z[b:], self.temperature)
        owner = torch.arange(b, device=v1.device).repeat_interleave(p)
        pooled = [roi_max_pool(emb, owner + off, c.reshape(-1, 2), self.patch_size).mean((2, 3))
                  for off, c in ((0, c1), (b, c2))]
        local = self.local_head(torch.cat(pooled).float())
        local_loss = nt_xent(local[:b * p], local[b * p:], self.temperature)
        total = self.lam * global_loss + (1 - self.lam) * local_loss
        return torch.stack([total, global_loss, local_loss])


# ---- checkpoints ------------------------------------------------------------------------------

def _cosine_lr(base: float, floor: float, step: int, total: int) -> float:
    t = min(step / max(1, total), 1.0)
    return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * t))


# ---- the stage --------------------------------------------------------------------------------

def _check_images(images: Sequence[str], window: int) -> int:
    from ..io.rasters import data_band_indexes, open_raster
    if not images:
        raise InputError("give at least one image to pre-train on (--image)")
    counts = []
    for path in images:
        with open_raster(path) as ds:
            counts.append(len(data_band_indexes(ds) or [1]))
            if ds.width < window or ds.height < window:
                raise InputError(f"{path} is {ds.width}×{ds.height} px, smaller than the "
                                 f"pre-training window {window}; use a smaller --crop "
                                 f"(the window is crop × 8/7) or --window")
    if len(set(counts)) > 1:
        detail = ", ".join(f"{Path(p).name}: {n}" for p, n in zip(images, counts))
        raise InputError(f"all pre-training images must have the same number of bands ({detail}); "
                         f"pre-train separately per sensor or select matching bands first")
    return counts[0]


def _statistics(images: Sequence[str], window: int, seed: int) -> Tuple[List[float], List[float]]:
    from .data import Cell, LabelSpec, Scene, SceneReader, band_statistics
    readers = [SceneReader(Scene({"image": p}), LabelSpec(classes=[])) for p in images]
    try:
        cells = [Cell(s, x, y, np.zeros(1, np.int64)) for s, r in enumerate(readers)
                 for y in range(0, r.height - window + 1, window)
                 for x in range(0, r.width - window + 1, window)]
        return band_statistics(readers, cells, window, seed)["image"]
    finally:
        for r in readers:
            r.close()


def _card(images: Sequence[str], out: str, arch: str, hparams: Dict[str, Any],
          stats: Tuple[List[float], List[float]], window: int) -> Dict[str, Any]:
    from ..io.rasters import open_raster
    from .data import band_names
    from .loop import _gsd
    n = hparams["in_channels"]
    with open_raster(images[0]) as ds:
        dtype, nodata = ds.dtypes[0], ds.nodata
    multiple = architecture(arch).input_multiple
    tile = max(multiple, math.ceil(window / multiple) * multiple)
    return {"name": Path(out).stem, "task": "pretrained", "architecture": arch,
            "hparams": hparams,
            "inputs": {"image": {"bands": [{"index": i + 1, "name": nm}
                                           for i, nm in enumerate(band_names(images[0], n))],
                                 "dtype": dtype, "mean": stats[0], "std": stats[1],
                                 "nodata": nodata}},
            "classes": [], "tile_size": tile, "overlap": max(8, tile // 8) // 8 * 8,
            "gsd_m": _gsd(images[0]), "training": {}}


def _deep_channels(network: nn.Module, arch: str, in_channels: int) -> int:
    size = max(32, 2 * architecture(arch).input_multiple)
    was = network.training
    network.eval()
    with torch.no_grad():
        deep, _ = network.ssl_features(torch.zeros(1, in_channels, size, size))
    network.train(was)
    return int(deep.shape[1])


def pretrain(images: Sequence[str], arch: str, out: str, epochs: int = 100, batch_size: int = 16,
             crop: int = 224, device: str = "auto", lr: float = 1e-3, patch_size: int = 48,
             patch_num: int = 4, lam: float = 0.5, temperature: float = 0.5, seed: int = 0,
             resume: Optional[str] = None, embedding: int = 64,
             hparams: Optional[Dict[str, Any]] = None, samples_per_epoch: Optional[int] = None,
             workers: int = 0, weight_decay: float = 1e-5, min_lr: float = 4e-8,
             window: Optional[int] = None, progress: Optional[ProgressFn] = None,
             cancelled: Optional[CancelledFn] = None) -> Dict[str, Any]:
    """Pre-train ``arch`` self-supervised (GLCNet) on ``images``; write a ``pretrained`` model.

    Returns a summary: model and checkpoint paths, epochs run, best epoch and loss, per-epoch
    history and this call's per-step losses (``step_losses``: [total, global, local]).
    """
    from .loop import TrainingError
    job = Job(progress, cancelled)
    images = [str(p) for p in images]
    a = architecture(arch)
    if a.task != "segmentation":
        raise InputError(f"architecture '{arch}' is for {a.task}; pre-training needs a "
                         f"segmentation network (glcnet or unet)")
    if epochs < 1 or batch_size < 1 or patch_num < 1 or patch_size < 1 or embedding < 1:
        raise InputError("epochs, batch size, patch size, patch number and embedding must be "
                         "at least 1")
    if not 0 <= lam <= 1 or temperature <= 0:
        raise InputError(f"lambda must be in [0, 1] and the temperature positive "
                         f"(got {lam}, {temperature})")
    if crop % a.input_multiple:
        raise InputError(f"--crop must be a multiple of {a.input_multiple} for {arch}")
    if 2 * (patch_size + 1) > crop:
        raise InputError(f"--patch-size {patch_size} is too large for --crop {crop}; use at most "
                         f"{crop // 2 - 1}")
    window = int(window or round(crop * 8 / 7))
    if window < crop // 2:
        raise InputError(f"--window {window} is too small for --crop {crop}")
    bands = _check_images(images, window)
    check_outputs({"--out": out}, [*images, resume])
    dev = resolve_device(device)
    rank, world = init_distributed(dev)
    if world > 1 and dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(dev)
    torch.manual_seed(seed)

    resume_state = load_checkpoint(resume, PRETRAIN_FORMAT) if resume else None
    if resume_state is not None:
        card = json.loads(resume_state["card"])
        if card["architecture"] != arch:
            raise InputError(f"{resume} pre-trains '{card['architecture']}', not '{arch}'")
        hp = card["hparams"]
        stats = (card["inputs"]["image"]["mean"], card["inputs"]["image"]["std"])
        if len(stats[0]) != bands:
            raise InputError(f"{resume} was pre-trained on {len(stats[0])}-band images; these "
                             f"have {bands}")
    else:
        job.report(0.0, "pretrain: band statistics")
        stats = _statistics(images, window, seed)
        hp = {"in_channels": bands, "num_classes": embedding, **(hparams or {})}
        card = _card(images, out, arch, hp, stats, window)
    net = build(arch, **hp)
    if not hasattr(net, "ssl_features"):
        raise InputError(f"architecture '{arch}' has no self-supervised hook (ssl_features); "
                         f"pre-train glcnet or unet")
    objective = GLCObjective(net, _deep_channels(net, arch, bands), int(hp["num_classes"]),
                             patch_size, lam, temperature).to(dev)

    if samples_per_epoch is None:
        from ..io.rasters import open_raster
        samples_per_epoch = 0
        for p in images:
            with open_raster(p) as ds:
                samples_per_epoch += (ds.width // window) * (ds.height // window)
        samples_per_epoch = max(batch_size, samples_per_epoch)
    steps_per_epoch = max(1, math.ceil(math.ceil(samples_per_epoch / world) / batch_size))
    total_steps = steps_per_epoch * epochs
    dataset = TwoViewDataset(images, window, crop, stats, patch_size, patch_num,
                             samples_per_epoch, seed)
    shard = torch.utils.data.Subset(dataset, range(rank, len(dataset), world))
    loader = torch.utils.data.DataLoader(shard, batch_size=batch_size, shuffle=False,
                                         drop_last=False, num_workers=workers,
                                         pin_memory=dev.type == "cuda",
                                         # not persistent: workers must see set_epoch()
                                         persistent_workers=False)
    model = torch.nn.parallel.DistributedDataParallel(objective) if world > 1 else objective
    optimiser = torch.optim.Adam(objective.parameters(), lr=lr, betas=(0.9, 0.99),
                                 weight_decay=weight_decay)
    floor = min(min_lr, lr)
    config = {"images": images, "arch": arch, "epochs": epochs, "batch_size": batch_size,
              "crop": crop, "window": window, "lr": lr, "min_lr": floor,
              "weight_decay": weight_decay, "patch_size": patch_size, "patch_num": patch_num,
              "lam": lam, "temperature": temperature, "embedding": int(hp["num_classes"]),
              "samples_per_epoch": samples_per_epoch, "seed": seed}

    history: List[Dict[str, Any]] = []
    best, best_epoch, start_epoch, step_count = math.inf, 0, 0, 0
    if resume_state is not None:
        objective.load_state_dict(resume_state["objective"])
        optimiser.load_state_dict(resume_state["optimizer"])
        torch.set_rng_state(resume_state["torch_rng"])
        history = json.loads(resume_state["history"])
        best, best_epoch = float(resume_state["best"]), int(resume_state["best_epoch"])
        start_epoch, step_count = int(resume_state["epoch"]), int(resume_state["step"])
        job.log(f"resumed from {resume} at epoch {start_epoch + 1}")

    ckpt = checkpoint_path(out)
    step_losses: List[List[float]] = []
    started = time.perf_counter()
    try:
        for epoch in range(start_epoch, epochs):
            dataset.set_epoch(epoch)
            model.train()
            sums = torch.zeros(4, dtype=torch.float64, device=dev)
            t0 = time.perf_counter()
            for step, batch in enumerate(loader):
                job.check()
                for g in optimiser.param_groups:
                    g["lr"] = _cosine_lr(lr, floor, step_count, total_steps)
                b = {k: v.to(dev, non_blocking=True) for k, v in batch.items()}
                losses = model(b["v1"], b["v2"], b["c1"], b["c2"])
                if not torch.isfinite(losses).all():
                    raise TrainingError(
                        f"the pre-training loss became {losses.detach().tolist()} at epoch "
                        f"{epoch + 1}, batch {step + 1}; stopped. The last good checkpoint is "
                        f"{ckpt if ckpt.exists() else 'none yet'}. Lower --lr (now {lr}) or check "
                        f"the images for extreme values")
                optimiser.zero_grad(set_to_none=True)
                losses[0].backward()
                optimiser.step()
                step_count += 1
                values = losses.detach().double()
                n = len(b["v1"])
                sums[:3] += values * n
                sums[3] += n
                step_losses.append([float(v) for v in values])
                job.report((epoch + (step + 1) / steps_per_epoch) / epochs,
                           f"epoch {epoch + 1}/{epochs} loss {float(sums[0] / sums[3]):.4f}")
            all_sum(sums, world)
            seconds = time.perf_counter() - t0
            mean = (sums[:3] / sums[3].clamp_min(1)).tolist()
            entry = {"epoch": epoch + 1, "loss": mean[0], "global_loss": mean[1],
                     "local_loss": mean[2], "lr": optimiser.param_groups[0]["lr"],
                     "samples_per_s": float(sums[3]) / max(seconds, 1e-9)}
            history.append(entry)
            improved = mean[0] < best
            if improved:
                best, best_epoch = mean[0], epoch + 1
            job.log(f"epoch {epoch + 1}/{epochs}: loss {mean[0]:.4f} (global {mean[1]:.4f}, "
                    f"local {mean[2]:.4f})" + (" (best)" if improved else ""))
            if rank == 0:
                if improved:
                    card["training"] = _summary(config, history, best_epoch, best)
                    save_model(out, card, net)
                save_checkpoint(ckpt, {
                    "format": PRETRAIN_FORMAT, "card": json.dumps(card),
                    "objective": objective.state_dict(), "optimizer": optimiser.state_dict(),
                    "epoch": epoch + 1, "step": step_count, "history": json.dumps(history),
                    "best": best, "best_epoch": best_epoch, "torch_rng": torch.get_rng_state(),
                    "config": json.dumps(config)})
            barrier(world)
    finally:
        dataset.close()

    if rank == 0:
        if Path(out).exists():   # the best epoch's network; its card learns the whole history
            final = load_model(out)
            final.card["training"] = _summary(config, history, best_epoch, best)
            save_model(out, final.card, final.network)
        else:                    # resumed after the model file was removed: keep the last state
            card["training"] = _summary(config, history, best_epoch, best)
            save_model(out, card, net)
    barrier(world)
    job.report(1.0, "pretrain: done")
    return {"model": str(out), "checkpoint": str(ckpt), "epochs_run": len(history),
            "best_epoch": best_epoch, "best_loss": best, "history": history,
            "step_losses": step_losses, "seconds": time.perf_counter() - started,
            "rank": rank, "world_size": world}


def _summary(config: Dict[str, Any], history: List[Dict[str, Any]], best_epoch: int,
             best: float) -> Dict[str, Any]:
    return {"stage": "self-supervised pre-training (GLCNet: global style + local matching "
                     "contrastive)",
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "engine_version": __version__, "epochs": len(history), "best_epoch": best_epoch,
            "best_loss": best, "hyper_parameters": {k: v for k, v in config.items()
                                                    if k != "images"},
            "data": config["images"],
            "history": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in e.items()}
                        for e in history]}


# ---- command line -----------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``pretrain`` (they mirror :func:`pretrain`)."""
    from ..models import available
    p.add_argument("--image", action="append", required=True, dest="images",
                   help="unlabelled image (repeat for several; all with the same bands)")
    p.add_argument("--arch", default="glcnet",
                   help=f"network to pre-train (glcnet or unet; registered: "
                        f"{', '.join(available('segmentation'))})")
    p.add_argument("--out", required=True, help="pre-trained model file to write (.rsmodel)")
    p.add_argument("--epochs", type=int, default=100, help="default 100 (the paper: 400)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="windows per step and device (default 16; the paper: 256)")
    p.add_argument("--crop", type=int, default=224, help="view edge in pixels (default 224)")
    p.add_argument("--window", type=int, help="source window edge (default crop × 8/7)")
    p.add_argument("--device", default="auto")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--weight-decay", type=float, default=1e-5)
    p.add_argument("--patch-size", type=int, default=48, help="RoI edge in pixels (default 48)")
    p.add_argument("--patch-num", type=int, default=4, help="matched RoIs per window (default 4)")
    p.add_argument("--lam", type=float, default=0.5,
                   help="weight of the global loss; the local one gets 1 - lam (default 0.5)")
    p.add_argument("--temperature", type=float, default=0.5, help="NT-Xent τ (default 0.5)")
    p.add_argument("--embedding", type=int, default=64,
                   help="channels of the per-pixel embedding map (default 64)")
    p.add_argument("--samples-per-epoch", type=int,
                   help="windows per epoch (default: the non-overlapping windows of the images)")
    p.add_argument("--workers", type=int, default=1, help="data-loading processes")
    p.add_argument("--resume", help="resume from a <model>.last.ckpt checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hparams", type=json.loads, default={},
                   help='architecture hyper-parameters as JSON, e.g. \'{"depth": 18}\'')


def run(args: argparse.Namespace, progress=None) -> None:
    """Run pre-training from parsed arguments and print where the results went."""
    import inspect
    names = inspect.signature(pretrain).parameters
    result = pretrain(**{k: v for k, v in vars(args).items() if k in names}, progress=progress)
    if result.get("rank", 0) == 0:
        print(f"wrote {result['model']} (best loss {result['best_loss']:.4f} at epoch "
              f"{result['best_epoch']} of {result['epochs_run']}, {result['seconds']:.0f} s)")
        print(f"  checkpoint {result['checkpoint']}")
        print(f"  fine-tune with: python -m engine train --arch {args.arch} --init "
              f"{result['model']} --image … --labels …")
