import numpy as np
import pytest
import rasterio

from engine.analysis.strata import allot, appearance_strata, kmeans
from engine.jobs import InputError
from tests.conftest import write_raster


def test_kmeans_parts_what_looks_different_the_same_way_each_time(rng):
    dark = rng.normal(10, 1, (30, 2))
    bright = rng.normal(200, 1, (10, 2))
    points = np.concatenate([dark, bright])
    labels = kmeans(points, 2)
    assert len(set(labels[:30])) == 1 and len(set(labels[30:])) == 1
    assert labels[0] != labels[-1]
    assert np.array_equal(kmeans(points, 2), labels)
    # fewer distinct points than groups asked: as many groups as points
    assert len(set(kmeans(np.array([[1.0], [1.0], [5.0]]), 8))) == 2


def test_allot_shares_places_by_area():
    strata = np.array([[0, 0, 0], [0, 0, 0], [1, 1, 1]])    # two thirds / one third
    taken = np.zeros(strata.shape, bool)
    open_ = np.ones(strata.shape, bool)
    order = []
    for _ in range(6):
        group = allot(strata, taken, open_ & ~taken)
        order.append(group)
        cell = np.argwhere((strata == group) & ~taken)[0]
        taken[tuple(cell)] = True
    assert order.count(0) == 4 and order.count(1) == 2
    assert order[0] == 0
    # a group with no open cell left is owed nothing
    assert allot(strata, taken, strata == 1) == 1
    assert allot(strata, taken, np.zeros(strata.shape, bool)) == -1


def test_strata_follow_the_image_on_the_uncertainty_grid(tmp_path):
    image = np.full((3, 128, 128), 20, np.uint8)
    image[:, :, 64:] = 220                                    # right half bright
    path = write_raster(tmp_path / "i.tif", image, origin=(0.0, 128.0), res=1.0)
    with rasterio.open(path) as ds:
        grid = (ds.width, ds.height, ds.transform)
    valid = np.ones((2, 2), bool)
    valid[1, 1] = False
    strata = appearance_strata(path, grid, (0, 0, 128, 128), (128, 128), 64, valid, count=4)
    assert strata[0, 0] == strata[1, 0] != strata[0, 1] and strata[1, 1] == -1
    with pytest.raises(InputError, match="not on the grid"):
        appearance_strata(path, (64, 64, grid[2]), (0, 0, 64, 64), (64, 64), 64, valid)
