"""The unlabelled-window dataset: nodata-heavy windows skipped, matched views, reproducible."""
from __future__ import annotations

import numpy as np
import torch

from engine.training.pretrain.dataset import MIN_VALID, TwoViewDataset
from tests.conftest import write_raster


def test_dataset_skips_nodata_heavy_windows_and_gives_matched_views(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(1, 255, (4, 96, 96)).astype(np.uint8)
    img[:, :, :60] = 0                                   # nodata: the left 60 columns
    path = str(write_raster(tmp_path / "nd.tif", img, nodata=0))
    ds = TwoViewDataset([path], window=32, crop=32, stats=([100.0] * 4, [50.0] * 4),
                        patch_size=4, patch_num=3, length=8, seed=0)
    try:
        for k in range(10):
            pixels, index = ds.read_window(np.random.default_rng(k))
            assert (index >= 0).mean() >= MIN_VALID
            assert (pixels[:, index < 0] == 0).all()    # invalid pixels sit at the mean
        item = ds[3]
        assert item["v1"].shape == item["v2"].shape == (4, 32, 32)
        assert item["c1"].shape == item["c2"].shape == (3, 2)
        again = ds[3]                                     # reproducible per (seed, epoch, index)
        assert all(torch.equal(item[k], again[k]) for k in item)
        ds.set_epoch(1)
        assert not torch.equal(ds[3]["v1"], item["v1"])
    finally:
        ds.close()
