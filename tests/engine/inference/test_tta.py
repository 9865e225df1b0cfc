import numpy as np
import pytest
import rasterio
import torch

from engine.inference.pipeline import PROBABILITY_SCALE, predict
from engine.inference.tta import TTA_MODES, transforms, with_tta
from engine.io.rasters import normalise
from engine.jobs import InputError
from engine.formats.modelfile import load_model, save_model
from tests.conftest import make_model, write_raster


def _position_forward(size=8):
    """Scores that depend on where a pixel is, not on the input: no symmetry at all."""
    p = torch.arange(size * size, dtype=torch.float32).reshape(1, 1, size, size) ** 1.5

    def forward(inputs):
        x = inputs["image"]
        return p.expand(x.shape[0], 1, size, size).clone()
    return forward


@pytest.mark.parametrize("mode,count", [("none", 1), ("flips", 4), ("d4", 8)])
def test_transforms_are_distinct_group_members(mode, count):
    a = torch.arange(16.0).reshape(1, 1, 4, 4)
    seen = {tuple(torch.rot90(a, k, (-2, -1)).flip(-1).flatten().tolist()) if flip else
            tuple(torch.rot90(a, k, (-2, -1)).flatten().tolist()) for k, flip in transforms(mode)}
    assert len(seen) == count  # each transform shows the window differently


def test_an_equivariant_network_is_unchanged_by_tta():
    """A per-pixel network commutes with flips and turns: TTA must give back exactly its output."""
    x = torch.randn(2, 3, 8, 8)
    pointwise = lambda inputs: torch.softmax(inputs["image"] * 3, dim=1)  # noqa: E731
    for mode in TTA_MODES:
        assert torch.allclose(with_tta(pointwise, mode)({"image": x}), pointwise({"image": x}),
                              atol=1e-6)


def test_averages_are_symmetric_under_their_group():
    x = {"image": torch.zeros(1, 3, 8, 8)}
    flips = with_tta(_position_forward(), "flips")(x)[0, 0]
    assert torch.allclose(flips, flips.flip(-1)) and torch.allclose(flips, flips.flip(-2))
    assert not torch.allclose(flips, flips.T)
    d4 = with_tta(_position_forward(), "d4")(x)[0, 0]
    assert torch.allclose(d4, d4.T) and torch.allclose(d4, torch.rot90(d4, 1))
    plain = with_tta(_position_forward(), "none")(x)[0, 0]
    assert not torch.allclose(plain, plain.flip(-1))


def test_numpy_and_torch_agree_and_both_dates_turn_together():
    rng = np.random.default_rng(0)
    t1, t2 = rng.normal(size=(2, 2, 8, 8)).astype(np.float32)[:, None].repeat(2, 1)

    def diff(inputs):  # a change score that also depends on position
        d = inputs["t2"] - inputs["t1"]
        return d[:, :1] * (1 + np.arange(8, dtype=np.float32)) if isinstance(d, np.ndarray) \
            else d[:, :1] * (1 + torch.arange(8.0))
    a = with_tta(diff, "d4")({"t1": t1, "t2": t2})
    b = with_tta(diff, "d4")({"t1": torch.from_numpy(t1), "t2": torch.from_numpy(t2)}).numpy()
    assert isinstance(a, np.ndarray) and np.allclose(a, b, atol=1e-5)
    same = with_tta(diff, "d4")({"t1": t1, "t2": t1})
    assert np.allclose(same, 0)  # the dates stay aligned under every transform


def test_unknown_mode_is_a_sentence(tmp_path, rng):
    img = write_raster(tmp_path / "in.tif", rng.integers(0, 255, (4, 64, 64), dtype=np.uint8))
    model = make_model(tmp_path / "m.rsmodel", base=4, depth=2, tile=64, overlap=16)
    with pytest.raises(InputError, match="unknown test-time augmentation 'd8'; use one of none, "
                                         "flips, d4"):
        predict(model, img, tmp_path / "out.tif", device="cpu", tta="d8")
    assert not (tmp_path / "out.tif").exists()


def test_predict_averages_the_probabilities_over_d4(tmp_path, rng):
    img = write_raster(tmp_path / "in.tif", rng.integers(0, 255, (4, 64, 64), dtype=np.uint8))
    model = make_model(tmp_path / "m.rsmodel", base=4, depth=2, tile=64, overlap=16)
    m = load_model(model)
    with torch.no_grad():  # a sharper random network: its windows are far from symmetric
        m.network.decoder.head.weight.mul_(100)
        m.network.decoder.head.bias.zero_()
    save_model(model, m.card, m.network)
    group = m.card["inputs"]["image"]
    with rasterio.open(img) as ds:
        x = torch.from_numpy(normalise(ds.read(out_dtype="float32"), ds.dataset_mask() > 0,
                                       group["mean"], group["std"]))[None]
    ref = torch.zeros(1, len(m.card["classes"]), 64, 64)
    with torch.inference_mode():
        for k in range(4):
            for flip in (False, True):
                t = torch.rot90(x, k, (-2, -1))
                t = t.flip(-1) if flip else t
                p = torch.softmax(m.network(image=t), 1)
                p = p.flip(-1) if flip else p
                ref += torch.rot90(p, -k, (-2, -1)) / 8
    plain, tta = tmp_path / "p0.tif", tmp_path / "p8.tif"
    predict(model, img, tmp_path / "c0.tif", probabilities=plain, device="cpu")
    predict(model, img, tmp_path / "c8.tif", probabilities=tta, device="cpu", tta="d4")
    with rasterio.open(tta) as p8, rasterio.open(plain) as p0:
        got, before = p8.read() / PROBABILITY_SCALE, p0.read() / PROBABILITY_SCALE
    assert np.abs(got - ref[0].numpy()).max() <= 0.5 / PROBABILITY_SCALE + 1e-5
    assert np.abs(got - before).max() > 0.02  # a random network is far from symmetric
