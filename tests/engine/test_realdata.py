"""Smoke tests on real rasters from ../shared/data (skipped with the reason when absent)."""
import numpy as np
import pytest
import rasterio

from engine.inference.pipeline import predict
from tests.conftest import make_model, shared_data

pytestmark = pytest.mark.realdata


@pytest.fixture
def rgb_model(tmp_path):
    return make_model(tmp_path / "rgb.rsmodel", bands=3, classes=6, base=4, depth=2,
                      tile=128, overlap=32)


def test_landsat_nodata_collar_becomes_output_nodata(tmp_path, rgb_model):
    src = shared_data("landsat", "RGB.byte.tif")
    out = tmp_path / "landsat.tif"
    predict(rgb_model, src, out, device="cpu", batch_size=4)
    with rasterio.open(src) as s, rasterio.open(out) as o:
        assert o.crs == s.crs and o.transform == s.transform and o.shape == s.shape
        collar = s.dataset_mask() == 0
        classes = o.read(1)
    assert 0.05 < collar.mean() < 0.9, "the file should have a nodata collar"
    assert (classes[collar] == 255).all()
    assert (classes[~collar] != 255).all()


def test_uav_rgba_uses_alpha_as_mask_not_as_a_band(tmp_path, rgb_model):
    src = shared_data("uav-ortho", "dummy_fotomap_small.tif")
    out, prob = tmp_path / "uav.tif", tmp_path / "uav_p.tif"
    predict(rgb_model, src, out, probabilities=prob, device="cpu", batch_size=4)
    with rasterio.open(src) as s, rasterio.open(out) as o, rasterio.open(prob) as p:
        alpha = s.read(4)
        classes = o.read(1)
        assert o.crs == s.crs and o.transform == s.transform
        assert p.count == 6
        probs = p.read()
    assert ((alpha == 0) == (classes == 255)).all()
    valid = classes != 255
    assert np.abs(probs[:, valid].sum(0).astype(int) - 254).max() <= 6  # rounding of 6 classes
