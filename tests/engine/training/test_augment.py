import numpy as np
import pytest

from engine.training.augment import SensorShift, random_scale, resize_window, sensor_shift


def test_random_scale_is_log_uniform_between_half_and_double():
    rng = np.random.default_rng(0)
    s = np.array([random_scale(rng) for _ in range(4000)])
    assert s.min() >= 0.5 and s.max() <= 2.0
    assert np.mean(s < 1) == pytest.approx(0.5, abs=0.03)


def test_resize_window_keeps_labels_categorical_and_pixels_in_range():
    rng = np.random.default_rng(0)
    px = rng.uniform(0, 255, (3, 64, 64)).astype(np.float32)
    lab = rng.integers(0, 4, (64, 64)).astype(np.uint8)
    p2, l2 = resize_window(px, lab, 32)
    assert p2.shape == (3, 32, 32) and l2.shape == (32, 32)
    assert set(np.unique(l2)) <= set(np.unique(lab))
    assert p2.min() >= 0 and p2.max() <= 255
    same = resize_window(px, lab, 64)
    assert same[0] is px and same[1] is lab


def test_sensor_shift_changes_radiometry_but_not_geometry():
    rng = np.random.default_rng(0)
    px = np.zeros((3, 48, 48), np.float32) + 100
    px[:, 10:30, 10:30] = 200  # a bright square
    out = sensor_shift(px, [120.0] * 3, [40.0] * 3, rng, SensorShift(blur=0))
    assert out.shape == px.shape and out.dtype == np.float32
    assert not np.allclose(out, px)
    inside, outside = out[:, 15:25, 15:25].mean(), out[:, 35:45, 35:45].mean()
    assert inside > outside + 30  # the square is still there and still brighter


def test_each_draw_differs_and_repeats_with_the_same_seed():
    px = np.random.default_rng(1).uniform(0, 1, (2, 16, 16)).astype(np.float32)
    a = sensor_shift(px, [0.5, 0.5], [0.3, 0.3], np.random.default_rng(5))
    b = sensor_shift(px, [0.5, 0.5], [0.3, 0.3], np.random.default_rng(5))
    c = sensor_shift(px, [0.5, 0.5], [0.3, 0.3], np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.allclose(a, c)
