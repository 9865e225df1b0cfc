import numpy as np
import pytest
import rasterio
import torch

from engine.inference.pipeline import PROBABILITY_SCALE, predict
from engine.inference.uncertainty import NODATA, SCALE, to_uint8, uncertainty
from engine.jobs import InputError
from tests.conftest import make_model, write_raster


def test_margin_and_entropy_of_known_probabilities():
    p = np.array([[[1.0, 0.5, 0.4]], [[0.0, 0.5, 0.35]], [[0.0, 0.0, 0.25]]], np.float32)
    margin = uncertainty(p, "margin")[0]
    assert np.allclose(margin, [1.0 - 1.0, 1.0 - 0.0, 1.0 - 0.05])
    entropy = uncertainty(torch.from_numpy(p), "entropy")[0].numpy()
    assert entropy[0] == pytest.approx(0.0, abs=1e-6)
    assert entropy[1] == pytest.approx(np.log(2) / np.log(3), rel=1e-5)
    assert entropy[0] < entropy[1] < entropy[2] <= 1.0
    # torch and numpy agree
    assert np.allclose(uncertainty(torch.from_numpy(p), "margin").numpy(), uncertainty(p))


def test_nodata_where_invalid():
    p = torch.full((2, 2, 2), 0.5)
    valid = torch.tensor([[True, False], [True, True]])
    u = to_uint8(p, valid)
    assert u.shape == (1, 2, 2) and u[0, 0, 1] == NODATA and u[0, 0, 0] == SCALE


@pytest.mark.parametrize("measure", ["margin", "entropy"])
def test_predict_writes_uncertainty_from_the_same_probabilities(tmp_path, rng, measure):
    img = write_raster(tmp_path / "in.tif", rng.integers(0, 255, (3, 90, 70), dtype=np.uint8))
    model = make_model(tmp_path / "m.rsmodel", arch="test-pointwise", bands=3, classes=4,
                       tile=32, overlap=8)
    out, prob, unc = tmp_path / "out.tif", tmp_path / "p.tif", tmp_path / "u.tif"
    result = predict(model, img, out, probabilities=prob, uncertainty=unc, device="cpu",
                     uncertainty_measure=measure)
    assert result["uncertainty"] == str(unc)
    with rasterio.open(prob) as p, rasterio.open(unc) as u:
        probs = p.read().astype(np.float32) / PROBABILITY_SCALE
        got = u.read(1)
        assert u.nodata == NODATA and u.dtypes[0] == "uint8" and u.crs == p.crs
    expected = np.rint(np.clip(uncertainty(probs, measure), 0, 1) * SCALE)
    # the probabilities on disk are themselves rounded to 1/254
    assert np.abs(got.astype(int) - expected).max() <= 3
    assert got.std() > 0


def test_unknown_measure_is_a_sentence(tmp_path, rng):
    img = write_raster(tmp_path / "in.tif", rng.integers(0, 255, (3, 20, 20), dtype=np.uint8))
    model = make_model(tmp_path / "m.rsmodel", arch="test-pointwise", bands=3, classes=2,
                       tile=16, overlap=4)
    with pytest.raises(InputError, match="margin, entropy"):
        predict(model, img, tmp_path / "o.tif", uncertainty=tmp_path / "u.tif",
                uncertainty_measure="variance")
    assert not (tmp_path / "o.tif").exists()
