"""The synthetic sample scenes: deterministic, seamless when streamed, georeferenced, learnable."""
import numpy as np
import pytest
import rasterio

from engine.jobs import Cancelled, InputError
from engine.sample import CLASSES, _render, make_sample


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_sample(tmp_path_factory.mktemp("s"), size=512, seed=7)


def read(path, band=None):
    with rasterio.open(path) as ds:
        return ds.read(band) if band else ds.read()


def test_same_seed_same_pixels_other_seed_differs(tmp_path, scene):
    again = make_sample(tmp_path / "again", size=512, seed=7)
    for key in scene:
        assert (read(scene[key]) == read(again[key])).all(), key
    other = make_sample(tmp_path / "other", size=512, seed=8)
    assert (read(other["t1"]) != read(scene["t1"])).mean() > 0.3


def test_rendering_does_not_depend_on_the_window():
    """Pixels are a function of global coordinates: any window renders the same values."""
    whole = _render(3, 0, 300, 0, 300)
    part = _render(3, 137, 300, 61, 300)
    for key in whole:
        assert (whole[key][..., 137:300, 61:300] == part[key]).all(), key


def test_georeferencing(scene):
    transforms = set()
    for key, path in scene.items():
        with rasterio.open(path) as ds:
            assert ds.crs.to_epsg() == 32633
            assert ds.res == (0.5, 0.5)
            assert ds.shape == (512, 512)
            transforms.add(ds.transform)
            if key in ("t1", "t2"):
                assert ds.count == 4 and ds.dtypes[0] == "uint8"
                assert ds.descriptions == ("R", "G", "B", "NIR")
                assert ds.colorinterp[3].name != "alpha"  # NIR is data, not a mask
            if key == "dsm":
                assert ds.dtypes[0] == "float32"
    assert len(transforms) == 1


def test_classes_are_plausible_and_learnable(scene):
    labels = read(scene["labels"], 1)
    t1 = read(scene["t1"]).astype(float)
    shares = {v: (labels == v).mean() for v, _, _ in CLASSES}
    assert all(s > 0.001 for s in shares.values()), shares
    assert 0.05 < shares[2] < 0.4
    nir = t1[3]
    vegetation = np.isin(labels, (3, 4))
    assert nir[vegetation].mean() > nir[labels == 2].mean() + 20
    dsm = read(scene["dsm"], 1)
    assert dsm[labels == 2].mean() > dsm[labels == 1].mean() + 2


def test_change_is_building_appearance_or_disappearance(scene):
    change = read(scene["change"], 1)
    a, b = read(scene["labels"], 1), read(scene["labels_t2"], 1)
    assert set(np.unique(change)) <= {0, 1} and change.mean() > 0.001
    assert (change == ((a == 2) ^ (b == 2))).all()


def test_cancel_leaves_nothing(tmp_path):
    calls = {"n": 0}

    def cancelled():
        calls["n"] += 1
        return calls["n"] > 1

    with pytest.raises(Cancelled):
        make_sample(tmp_path / "c", size=600, cancelled=cancelled)
    assert not list((tmp_path / "c").iterdir())


def test_too_small_is_refused(tmp_path):
    with pytest.raises(InputError, match="64"):
        make_sample(tmp_path, size=32)
