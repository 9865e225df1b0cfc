"""Shared by the GLCNet pre-training tests (seed-models.md §3.2–3.4): tiny networks, one
thread, unlabelled rasters with structure and a coordinate window."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import write_raster

# Tiny GLCNet; ASPP dropout 0.1 instead of 0.5: with 16 channels on a 3×3 map, dropout 0.5 would
# drown the style vector (channel variance) of these small views in noise.
NET = {"depth": 18, "width": 8, "aspp_channels": 16, "low_level_channels": 8,
       "decoder_channels": 16, "dropout": 0.1}
UNET = {"base": 4, "depth": 2}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine two OpenMP threads per process can be
    tens of times slower.  Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _smooth_field(rng, bands, size, cells=6):
    low = torch.from_numpy(rng.normal(0, 1, (1, bands, cells, cells)).astype(np.float32))
    up = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic",
                                         align_corners=False)[0].numpy()
    return up


def rasters(folder, n=4, bands=3, size=80, seed=0):
    """Unlabelled rasters with structure (smooth colour fields) and a style of their own (colour
    offset, texture strength)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        img = (128 + 40 * _smooth_field(rng, bands, size)
               + rng.normal(0, 4 + 8 * i, (bands, size, size)))
        img += rng.uniform(-60, 60, (bands, 1, 1))
        paths.append(str(write_raster(folder / f"u{i}.tif",
                                      np.clip(img, 1, 255).astype(np.uint8))))
    return paths


def coordinate_window(size):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return np.stack([yy, xx, yy * size + xx]), np.arange(size * size).reshape(size, size)
