"""GLCNet's DeepLabv3+ (seed-models.md §3.2): registration, shapes, size, SSL hook, learning."""
from __future__ import annotations

import pytest
import torch

import engine.models.glcnet as glcnet
from engine.models import architecture, build
from engine.training.config import TrainConfig, resolve_recipe


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine, two OpenMP threads per process can be
    tens of times slower than one.  Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny(in_channels: int = 4, num_classes: int = 7, **extra) -> glcnet.DeepLabV3Plus:
    torch.manual_seed(0)
    return glcnet.build_glcnet(in_channels, num_classes, **{**glcnet.TINY, **extra})


def test_registered_as_segmentation_network():
    arch = architecture("glcnet")
    assert arch.task == "segmentation"
    assert arch.input_multiple == 16
    assert arch.builder is glcnet.build_glcnet


@pytest.mark.parametrize("bands,h,w", [(4, 64, 64), (3, 48, 80), (1, 32, 32), (6, 40, 56)])
def test_forward_shapes_any_band_count_and_size(bands, h, w):
    model = _tiny(bands, 5).eval()
    with torch.no_grad():
        out = model(image=torch.randn(2, bands, h, w))
    assert out.shape == (2, 5, h, w)
    assert torch.isfinite(out).all()


def test_ssl_features_are_aspp_output_and_full_resolution_map():
    model = _tiny(3, 64).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        deep, emb = model.ssl_features(x)
        assert torch.equal(emb, model(x))                     # the embedding map is the output
        low, feat = model.backbone(x)
        assert torch.allclose(deep, model.aspp(feat))
    assert deep.shape == (2, glcnet.TINY["aspp_channels"], 4, 6)   # output stride 16
    assert emb.shape == (2, 64, 64, 96)
    assert low.shape[-2:] == (16, 24)                              # low-level: stride 4


def test_output_stride_16_with_dilated_layer4():
    model = glcnet.build_glcnet(3, 2, depth=50, width=8, aspp_channels=16, decoder_channels=16)
    assert model.backbone.low_channels == 32 and model.backbone.out_channels == 256
    l4 = model.backbone.layer4
    assert all(b.conv2.dilation == (2, 2) and b.conv2.stride == (1, 1) for b in l4)
    assert [seq[0].dilation for seq in model.aspp.branches] == [(1, 1), (6, 6), (12, 12), (18, 18)]
    with torch.no_grad():
        _, feat = model.eval().backbone(torch.randn(1, 3, 64, 64))
    assert feat.shape == (1, 256, 4, 4)


def test_full_configuration_size_matches_the_spec():
    model = glcnet.build_glcnet(4, 7)
    n = sum(p.numel() for p in model.parameters())
    assert n == glcnet.FULL_PARAMS
    assert abs(n - 40.35e6) / 40.35e6 < 0.02
    assert model.aspp.project[0][0].in_channels == 5 * 256
    assert model.decoder.reduce[0].out_channels == 48
    assert model.decoder.fuse[0][0].in_channels == 304
    assert model.aspp.project[1].p == 0.5


def test_training_mode_with_a_single_sample_batch():
    model = _tiny(3, 4).train()
    out = model(torch.randn(1, 3, 48, 48))      # ASPP pooling BN falls back to running stats
    assert out.shape == (1, 4, 48, 48)
    out.mean().backward()


def test_pretrained_weights_fit_a_fine_tune_network_except_the_classifier():
    pre, fine = _tiny(4, 64).state_dict(), _tiny(4, 7).state_dict()
    assert set(pre) == set(fine)
    differ = sorted(k for k in pre if pre[k].shape != fine[k].shape)
    assert differ == ["classifier.bias", "classifier.weight"]


def test_recipe_is_used_by_the_training_loop():
    hp = resolve_recipe(TrainConfig(out="x", images=["a"], arch="glcnet"), steps_per_epoch=10)
    assert hp["lr"] == 1e-4 and hp["weight_decay"] == 1e-5
    assert hp["warmup_steps"] == 0 and hp["grad_clip"] == 0.0 and hp["loss"] == "ce"
    if "optimizer" in hp:                         # loops that pick the optimiser from the recipe
        assert hp["optimizer"] == "adam" and tuple(hp["betas"]) == (0.9, 0.99)


def test_overfits_one_batch():
    torch.manual_seed(1)
    model = _tiny(3, 3).train()
    # 4-px blocks (the decoder works at stride 4), classes from the block colours
    blocks = torch.randn(2, 3, 8, 8)
    x = blocks.repeat_interleave(4, 2).repeat_interleave(4, 3)
    target = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.3 * losses[0]


def test_build_by_name_with_size_options():
    model = build("glcnet", in_channels=2, num_classes=3, **glcnet.TINY, dropout=0.1,
                  rates=[2, 4, 6])
    assert model.aspp.project[1].p == 0.1
    assert [seq[0].dilation for seq in model.aspp.branches[1:]] == [(2, 2), (4, 4), (6, 6)]
