"""The ISPRS band-change protocol's rasters (bench/transfer.py ``bands``): a labelled crop lies
where it lies in the tile, at the given GSD, and the held-out labels exclude the crops."""
from __future__ import annotations

import numpy as np
import rasterio
from PIL import Image

from bench.transfer import georeferenced


def test_crop_keeps_its_place_and_the_held_out_labels_blank_the_crops(tmp_path):
    labels = np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) % 7 + 1
    png = tmp_path / "labels.png"
    Image.fromarray(labels.astype(np.uint8)).save(png)
    crop = georeferenced(png, tmp_path / "crop.tif", 0.09, window=(16, 8, 32, 24))
    held = georeferenced(png, tmp_path / "held.tif", 0.09, blank=[(16, 8, 32, 24)])
    with rasterio.open(crop) as c, rasterio.open(held) as h:
        assert c.res == (0.09, 0.09) and (c.width, c.height) == (32, 24)
        assert np.array_equal(c.read(1), labels[8:32, 16:48])
        # the crop's pixels sit over the same ground as the tile's pixels it was cut from
        assert c.xy(0, 0) == h.xy(8, 16)
        held_labels = h.read(1)
    assert (held_labels[8:32, 16:48] == 0).all()
    outside = np.ones_like(labels, bool)
    outside[8:32, 16:48] = False
    assert np.array_equal(held_labels[outside], labels[outside])
