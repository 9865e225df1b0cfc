"""Two views with tracked pixel correspondence, matched RoIs and the photometric jitter."""
from __future__ import annotations

import numpy as np
import pytest

from engine.training.pretrain.views import _grey_rotation, match_patches, photometric, two_views
from tests.engine.training.pretrain.conftest import coordinate_window


@pytest.mark.parametrize("seed", range(60))
def test_index_maps_track_every_view_pixel_exactly(seed):
    size, crop = 73, 64
    pixels, index = coordinate_window(size)
    rng = np.random.default_rng(seed)
    v1, v2, i1, i2 = two_views(pixels, index, crop, rng, jitter=False, resample="nearest")
    for v, i in ((v1, i1), (v2, i2)):
        assert v.shape == (3, crop, crop) and i.shape == (crop, crop)
        # nearest resampling of the pixels lands exactly on the source pixel named by the map
        assert np.array_equal(v[0], i // size) and np.array_equal(v[1], i % size)
        assert np.array_equal(v[2], i.astype(np.float32))
    # the image itself is resampled bilinearly at the same pixel centres: within half a pixel
    rng = np.random.default_rng(seed)
    b1, b2, j1, j2 = two_views(pixels, index, crop, rng, jitter=False)
    assert np.array_equal(j1, i1) and np.array_equal(j2, i2)
    for v, i in ((b1, i1), (b2, i2)):
        assert np.abs(v[0] - i // size).max() <= 0.5 + 1e-4
        assert np.abs(v[1] - i % size).max() <= 0.5 + 1e-4
    # matched RoI centres are the same source pixel in both views, inside the views
    found = match_patches(i1, i2, 8, 4, np.random.default_rng(seed))
    assert found is not None
    c1, c2 = found
    assert c1.shape == c2.shape == (4, 2)
    assert np.array_equal(i1[c1[:, 0], c1[:, 1]], i2[c2[:, 0], c2[:, 1]])
    for c in (c1, c2):
        assert (c - 4 >= 0).all() and (c - 4 + 8 <= crop - 1).all()   # box of 9 px inside


def test_view_geometry_is_random_and_covers_flips_and_rotations():
    size, crop = 40, 32
    pixels, index = coordinate_window(size)
    seen = set()
    for seed in range(200):
        _, _, i1, i2 = two_views(pixels, index, crop, np.random.default_rng(seed), jitter=False)
        # orientation of view 2 relative to the source: where do the row/column axes point?
        r, c = i2 // size, i2 % size
        down = (np.sign(r[-1, 0] - r[0, 0]), np.sign(c[-1, 0] - c[0, 0]))
        right = (np.sign(r[0, -1] - r[0, 0]), np.sign(c[0, -1] - c[0, 0]))
        seen.add((int(down[0]), int(down[1]), int(right[0]), int(right[1])))
        rr, cc = i1 // size, i1 % size                  # view 1: crop only, upright
        assert (np.diff(rr, axis=0) >= 0).all() and (np.diff(cc, axis=1) >= 0).all()
        h = rr.max() - rr.min() + 1
        w = cc.max() - cc.min() + 1
        assert 0.4 * size * size * 0.85 <= h * w <= size * size
        assert 3 / 4 * 0.8 <= w / h <= 4 / 3 * 1.25
    assert len(seen) == 8            # all eight flip/rotation combinations occur


def test_invalid_pixels_are_never_matched():
    size, crop = 73, 64
    pixels, index = coordinate_window(size)
    index = index.copy()
    index[:, : size // 2] = -1                         # left half nodata
    for seed in range(30):
        rng = np.random.default_rng(seed)
        _, _, i1, i2 = two_views(pixels, index, crop, rng, jitter=False)
        found = match_patches(i1, i2, 6, 3, rng)
        if found is None:
            continue
        c1, c2 = found
        assert (i1[c1[:, 0], c1[:, 1]] >= 0).all()
        assert np.array_equal(i1[c1[:, 0], c1[:, 1]], i2[c2[:, 0], c2[:, 1]])


def _disjoint(c, patch_size):
    for a in range(len(c)):
        for b in range(a + 1, len(c)):
            if (np.abs(c[a] - c[b]) <= patch_size).all():
                return False
    return True


def test_matched_patches_do_not_overlap_when_possible():
    size = 64
    index = np.arange(size * size).reshape(size, size)
    rotated = np.rot90(index, 1).copy()
    for seed in range(50):
        c1, c2 = match_patches(index, rotated, 8, 4, np.random.default_rng(seed))
        assert _disjoint(c1, 8) and _disjoint(c2, 8)
        assert np.array_equal(index[c1[:, 0], c1[:, 1]], rotated[c2[:, 0], c2[:, 1]])
    # random views: disjoint in the great majority of cases, always the same source pixels
    pixels, index = coordinate_window(73)
    ok = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        _, _, i1, i2 = two_views(pixels, index, 64, rng, jitter=False)
        c1, c2 = match_patches(i1, i2, 8, 4, rng)
        ok += _disjoint(c1, 8) and _disjoint(c2, 8)
    assert ok >= 80
    # no shared pixel away from the borders: no match
    assert match_patches(index[:20, :20], index[40:60, 40:60], 4, 2,
                         np.random.default_rng(0)) is None


def test_photometric_jitter_any_band_count():
    rng = np.random.default_rng(0)
    for bands in (1, 2, 3, 4, 6):
        x = rng.normal(0, 1, (bands, 32, 32)).astype(np.float32)
        changed = 0
        for seed in range(6):
            y = photometric(x, np.random.default_rng(seed))
            assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
            changed += not np.allclose(x, y)
        assert changed >= 4
    # the hue rotation keeps grey (equal-band) pixels grey and preserves norms
    r = _grey_rotation(0.7)
    assert np.allclose(r @ np.ones(3), np.ones(3))
    assert np.allclose(r.T @ r, np.eye(3))
