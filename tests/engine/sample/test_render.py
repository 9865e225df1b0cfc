"""Tests of the sample scene's pixels (engine/sample/layout.py and render.py): any window is a
crop of the plane, and the content (classes, spectra, change, heights) is plausible."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.sample.render import render

NAMES = ("t1", "t2", "dsm", "labels", "labels_t2", "change")


@pytest.fixture(scope="module")
def arr():
    """The 512² scene of seed 0, each array band-first as in its file (test_write checks the
    files hold exactly these pixels)."""
    return {k: v if v.ndim == 3 else v[None] for k, v in render(0, 0, 512, 0, 512).items()}


def test_content_does_not_depend_on_window_boundaries():
    whole = render(3, 0, 320, 0, 320)
    rows, cols = [0, 37, 64, 200, 320], [0, 101, 128, 320]
    for y0, y1 in zip(rows[:-1], rows[1:]):
        for x0, x1 in zip(cols[:-1], cols[1:]):
            part = render(3, y0, y1, x0, x1)
            for name in NAMES:
                np.testing.assert_array_equal(part[name], whole[name][..., y0:y1, x0:x1],
                                              err_msg=f"{name} at {y0}:{y1},{x0}:{x1}")


@settings(max_examples=12, deadline=None)
@given(y0=st.integers(0, 4000), x0=st.integers(0, 4000), h=st.integers(1, 90),
       w=st.integers(1, 90), seed=st.integers(-2**40, 2**40))
def test_any_window_is_a_crop_of_its_surroundings(y0, x0, h, w, seed):
    big = render(seed, y0 // 64 * 64, y0 + h + 40, x0 // 64 * 64, x0 + w + 40)
    part = render(seed, y0, y0 + h, x0, x0 + w)
    oy, ox = y0 % 64, x0 % 64
    for name in NAMES:
        np.testing.assert_array_equal(part[name], big[name][..., oy:oy + h, ox:ox + w])


def test_all_classes_present_with_plausible_shares(arr):
    for name in ("labels", "labels_t2"):
        labels = arr[name][0]
        assert set(np.unique(labels)) == {1, 2, 3, 4, 5, 6}
        share = {v: float((labels == v).mean()) for v in range(1, 7)}
        assert all(s > 0.001 for s in share.values()), share
        assert 0.05 < share[2] < 0.40, share
        assert 0.05 < share[1] < 0.5 and share[3] > 0.2, share


def test_spectral_signatures(arr):
    for img, lab in (("t1", "labels"), ("t2", "labels_t2")):
        nir, red = arr[img][3].astype(float), arr[img][0].astype(float)
        labels = arr[lab][0]
        veg = (labels == 3) | (labels == 4)
        building = labels == 2
        assert nir[veg].mean() > nir[building].mean() + 20
        ndvi = (nir - red) / (nir + red + 1)
        assert ndvi[veg].mean() > ndvi[building].mean() + 0.2 and ndvi[building].mean() < 0
        # noise: the same class is not a flat colour
        assert arr[img][1][labels == 1].std() > 5
    # t2 is radiometrically shifted and independently noisy, even where nothing changed
    same = arr["labels"][0] == arr["labels_t2"][0]
    diff = arr["t2"].astype(int) - arr["t1"].astype(int)
    assert abs(diff[0][same].mean()) > 3
    assert diff[1][same].std() > 3


def test_change_is_the_building_xor_and_nothing_else_changes(arr):
    l1, l2, change = arr["labels"][0], arr["labels_t2"][0], arr["change"][0]
    assert set(np.unique(change)) == {0, 1}
    np.testing.assert_array_equal(change, ((l1 == 2) ^ (l2 == 2)).astype(np.uint8))
    assert change.mean() > 0.001
    np.testing.assert_array_equal(l1[change == 0], l2[change == 0])
    appeared, vanished = (l2 == 2) & (l1 != 2), (l1 == 2) & (l2 != 2)
    assert appeared.any() and vanished.any()
    assert set(np.unique(l2[vanished])) <= {3, 6}


def test_dsm_buildings_and_trees_stand_above_the_ground(arr):
    dsm, labels = arr["dsm"][0], arr["labels"][0]
    assert np.isfinite(dsm).all()
    ground = dsm[labels == 1].mean()
    assert dsm[labels == 2].mean() > ground + 3
    assert dsm[labels == 4].mean() > ground + 2
    # buildings 3..25 m above the surrounding terrain: check against the lowest pixel per cell
    heights = []
    for y in range(0, 512, 64):
        for x in range(0, 512, 64):
            cell_dsm, cell_lab = dsm[y:y + 64, x:x + 64], labels[y:y + 64, x:x + 64]
            if (cell_lab == 2).any():
                heights.append(cell_dsm[cell_lab == 2].max() - cell_dsm.min())
    assert heights and 2.5 < min(heights) and max(heights) < 32
