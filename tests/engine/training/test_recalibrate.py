"""A round's BatchNorm statistics re-estimated on the whole image (AdaBN)."""
import numpy as np
import pytest
import torch

from engine.formats.modelfile import load_model, read_card
from engine.inference.pipeline import image_band_statistics
from engine.io.radiometry import effective_affine
from engine.jobs import Cancelled
from engine.training.recalibrate import recalibrate_batchnorm
from tests.conftest import make_model, write_raster


def _scene(tmp_path, rng):
    """A 96² image (four 64² prediction windows at overlap 16: one batch) and a random unet."""
    data = rng.integers(0, 255, (3, 96, 96)).astype(np.uint8)
    data[:, :48] //= 4  # a dark top half: statistics a corner alone would not give
    image = write_raster(tmp_path / "image.tif", data)
    model = make_model(tmp_path / "m.rsmodel", bands=3, classes=3, base=4, depth=2, tile=64,
                       overlap=16)
    return image, model, data


def _first_batchnorm(net):
    return next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_the_statistics_are_those_of_the_whole_image(tmp_path, rng):
    image, model, data = _scene(tmp_path, rng)
    stats = image_band_statistics(read_card(model), image)
    assert recalibrate_batchnorm(model, image, stats) == 4
    net = load_model(model).network
    bn = _first_batchnorm(net)
    # what reaches the first BatchNorm: the first convolution of the normalised windows
    mean, std = effective_affine(read_card(model)["inputs"]["image"], stats)
    x = (data.astype(np.float32) - np.float32(mean)[:, None, None]) / np.float32(std)[:, None, None]
    windows = np.stack([x[:, r:r + 64, c:c + 64] for r in (0, 32) for c in (0, 32)])
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        seen = conv(torch.from_numpy(windows))
    assert torch.allclose(bn.running_mean, seen.mean((0, 2, 3)), atol=1e-4)
    assert torch.allclose(bn.running_var, seen.var((0, 2, 3), unbiased=True), rtol=1e-3)
    assert bn.momentum == 0.1  # left as it trains
    assert read_card(model)["classes"] == load_model(model).card["classes"]


def test_a_cancel_leaves_the_model_as_it_was(tmp_path, rng):
    image, model, _ = _scene(tmp_path, rng)
    before = model.read_bytes()
    with pytest.raises(Cancelled):
        recalibrate_batchnorm(model, image, image_band_statistics(read_card(model), image),
                              cancelled=lambda: True)
    assert model.read_bytes() == before


def test_a_network_without_batchnorm_is_left_alone(tmp_path, rng):
    image, _, _ = _scene(tmp_path, rng)
    model = make_model(tmp_path / "p.rsmodel", arch="test-pointwise", bands=3, classes=2,
                       tile=32, overlap=8)
    before = model.read_bytes()
    assert recalibrate_batchnorm(model, image,
                                 image_band_statistics(read_card(model), image)) == 0
    assert model.read_bytes() == before
