"""The GeoAI `predict_geotiff` reproduction the comparison benchmark runs: its tile grid, its
spline weights, and a result that equals the whole-image prediction for a per-pixel network."""
from __future__ import annotations

import numpy as np
import rasterio
import torch

from bench.vs_geoai import geoai_predict, geoai_tiles, spline_window
from tests.conftest import write_raster


def test_tile_grid_covers_the_raster_with_full_tiles_and_no_duplicates():
    tiles = geoai_tiles(1000, 700, 512, 64)
    assert len(tiles) == len(set(tiles))
    assert all(r1 - r0 == 512 and c1 - c0 == 512 for r0, c0, r1, c1 in tiles)
    covered = np.zeros((700, 1000), bool)
    for r0, c0, r1, c1 in tiles:
        covered[r0:r1, c0:c1] = True
    assert covered.all()
    assert max(c1 for _, _, _, c1 in tiles) == 1000  # the last column pulled back, not padded
    assert geoai_tiles(100, 80, 512, 64) == [(0, 0, 80, 100)]  # a small raster: one short tile


def test_spline_weights_taper_only_over_the_overlap():
    w = spline_window(64, 16)
    assert w.shape == (64, 64) and np.allclose(w, w.T) and np.allclose(w, w[::-1, ::-1])
    assert w[16:48, 16:48].min() == 1.0
    assert 0 < w[0, 32] < w[8, 32] < w[15, 32] == 1.0


def test_per_pixel_network_gives_the_whole_image_classes(tmp_path):
    rng = np.random.default_rng(2)
    data = rng.integers(0, 255, (3, 90, 130), dtype=np.uint8)
    src = write_raster(tmp_path / "in.tif", data)
    conv = torch.nn.Conv2d(3, 4, 1)
    with torch.no_grad():
        want = conv(torch.from_numpy(data.astype(np.float32) / 255)[None]).argmax(1)[0].numpy()
    geoai_predict(conv, src, tmp_path / "out.tif", 4, lambda a: a / 255, tile=32, overlap=8,
                  batch=3)
    with rasterio.open(tmp_path / "out.tif") as ds:
        assert ds.profile["compress"] == "lzw"
        assert np.array_equal(ds.read(1), want)
