import numpy as np
import pytest
import rasterio

from engine.io.radiometry import (BandStats, effective_affine, histogram_matcher,
                                  image_statistics, pre_affine, sample_positions)
from engine.io.rasters import WindowReader, normalise
from engine.jobs import InputError
from tests.conftest import write_raster


def _image(tmp_path, rng, gain=1.0, offset=0.0, name="a.tif"):
    base = np.random.default_rng(7).normal(100, 20, (3, 300, 400))
    data = np.clip(base * gain + offset, 0, 65535).astype(np.uint16)
    return write_raster(tmp_path / name, data)


def test_sample_positions_spread_over_the_raster():
    pos = sample_positions(1000, 600, 256, 25)
    xs, ys = {p[0] for p in pos}, {p[1] for p in pos}
    assert min(xs) == 0 and max(xs) == 1000 - 256 and min(ys) == 0 and max(ys) == 600 - 256
    assert sample_positions(100, 80, 256, 25) == [(0, 0)]


def test_image_statistics_are_stable_between_two_reads(tmp_path, rng):
    path = _image(tmp_path, rng)
    with rasterio.open(path) as ds:
        a = image_statistics(WindowReader(ds, [1, 2, 3]))
    with rasterio.open(path) as ds:
        b = image_statistics(WindowReader(ds, [1, 2, 3]))
    assert a.mean == b.mean and a.std == b.std
    assert np.array_equal(a.quantiles, b.quantiles)
    assert a.mean[0] == pytest.approx(100, abs=1) and a.std[0] == pytest.approx(20, abs=1)


def test_image_normalisation_maps_another_brightness_to_the_same_range(tmp_path, rng):
    """The same ground seen with 1.6× gain and an offset normalises to the same values."""
    group = {"mean": [0.0] * 3, "std": [1.0] * 3, "normalisation": "image"}
    out = []
    for name, gain, offset in (("a.tif", 1.0, 0.0), ("b.tif", 1.6, 300.0)):
        with rasterio.open(_image(tmp_path, rng, gain, offset, name)) as ds:
            reader = WindowReader(ds, [1, 2, 3])
            mean, std = effective_affine(group, image_statistics(reader))
            win = reader.read(50, 50, 64)
            out.append(normalise(win.pixels, win.valid, mean, std))
    assert np.abs(out[0] - out[1]).max() < 0.06  # uint16 rounding only


def test_percentile_mode_stretches_two_to_98_percent_to_zero_one():
    px = np.random.default_rng(0).uniform(0, 1000, (2, 50_000))
    stats = BandStats.of(px)
    offset, scale = pre_affine("percentile", stats, 2)
    assert offset == pytest.approx([20, 20], rel=0.05)
    assert offset + scale == pytest.approx([980, 980], rel=0.01)
    group = {"mean": [0.5, 0.5], "std": [0.25, 0.25], "normalisation": "percentile"}
    mean, std = effective_affine(group, stats)
    assert mean == pytest.approx(list(offset + 0.5 * scale)) and std == pytest.approx(list(0.25 * scale))


def test_dataset_mode_keeps_the_cards_statistics():
    group = {"mean": [10.0, 20.0], "std": [2.0, 4.0]}
    assert effective_affine(group, None) == ([10.0, 20.0], [2.0, 4.0])
    with pytest.raises(InputError, match="normalisation must be one of"):
        pre_affine("minmax", None, 2)


def test_histogram_matching_maps_one_distribution_onto_another():
    rng = np.random.default_rng(1)
    ref = rng.normal(100, 10, (3, 20_000))
    src = ref * 1.8 + 40
    match = histogram_matcher(BandStats.of(src), BandStats.of(ref))
    mapped = match(src[:, :1000].astype(np.float32))
    assert np.abs(mapped - ref[:, :1000]).max() < 1.5


def test_no_valid_pixels_is_explained():
    with pytest.raises(InputError, match="no valid pixels"):
        BandStats.of(np.zeros((3, 0)))
