"""SRCBTFusion-Net (seed-models.md §1): shapes, modules, any input size, loss, I/O, learning."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import engine.models.srcbtfusion as sr  # registers "srcbtfusion"
from engine.formats.card import default_card
from engine.formats.modelfile import load_model, save_model
from engine.models import architecture, build
from engine.training.config import recipe_of


def _tiny(in_channels: int = 3, num_classes: int = 6, seed: int = 0, **extra) -> sr.SRCBTFusionNet:
    torch.manual_seed(seed)
    return sr.build_srcbtfusion(in_channels, num_classes, **{**sr.TINY, **extra})


def _squares(n: int = 2, size: int = 64, bands: int = 3, classes: int = 4, seed: int = 0):
    """Synthetic labelled images: background + squares of classes 1…classes-1 with class colours."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.randn(classes, bands, generator=g)
    target = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        for c in range(1, classes):
            for _ in range(2):
                y, x = torch.randint(0, size - 20, (2,), generator=g).tolist()
                s = int(torch.randint(10, 20, (1,), generator=g))
                target[i, y:y + s, x:x + s] = c
    image = colours[target].permute(0, 3, 1, 2) + 0.2 * torch.randn(n, bands, size, size,
                                                                     generator=g)
    return image, target


# ---- registration and I/O contract ------------------------------------------------------------

def test_registered_as_segmentation_network():
    arch = architecture("srcbtfusion")
    assert arch.task == "segmentation"
    assert arch.input_multiple == 16
    assert arch.builder is sr.build_srcbtfusion
    assert isinstance(build("srcbtfusion", in_channels=3, num_classes=6, **sr.TINY),
                      sr.SRCBTFusionNet)


@pytest.mark.parametrize("bands,h,w", [(3, 64, 64), (4, 96, 96), (1, 64, 96), (3, 96, 64),
                                       (3, 32, 32), (4, 48, 80)])
def test_forward_shapes_any_size_and_bands(bands, h, w):
    model = _tiny(bands, 5)
    x = torch.randn(2, bands, h, w)
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 5, h, w)
    assert torch.isfinite(out).all()
    model.train()
    out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5, h, w)


def test_training_with_batch_one_works():
    model = _tiny().train()
    out = model(torch.randn(1, 3, 64, 64))          # 1×1 descriptors under BatchNorm
    assert out.shape == (1, 6, 64, 64) and torch.isfinite(out).all()


def test_full_configuration_parameter_count_and_forward():
    model = sr.build_srcbtfusion(3, 6)
    n = sum(p.numel() for p in model.parameters())
    assert n == sr.FULL_PARAMS
    assert abs(n - sr.SPEC_PARAMS) / sr.SPEC_PARAMS < 0.02
    # parts of the count (R50 trunk 3 stages, 8 ViT-B blocks)
    assert sum(p.numel() for p in model.trunk.parameters()) == 11_894_848
    assert len(model.transformer.blocks) == 8
    assert sum(p.numel() for p in model.transformer.blocks[0].parameters()) == 7_087_872
    assert model.transformer.position_embeddings.shape == (1, 256, 768)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 6, 32, 32) and torch.isfinite(out).all()


# ---- module by module -------------------------------------------------------------------------

def test_module_shapes_at_64():
    model = _tiny().eval()
    with torch.no_grad():
        f = model.features(torch.randn(2, 3, 64, 64))
    w = sr.TINY["width"]
    expected = {"root": (w, 32), "stage1": (4 * w, 16), "stage2": (8 * w, 8),
                "stage3": (16 * w, 4), "masm": (4 * w, 16), "em": (64, 4),
                "tokens": (sr.TINY["vit_hidden"], 4), "d0": (64, 4), "d1": (32, 8), "d2": (16, 16)}
    for name, (c, s) in expected.items():
        assert f[name].shape == (2, c, s, s), name
    assert ((f["em"] > 0) & (f["em"] < 1)).all()
    with torch.no_grad():
        out = model.head(f["d0"], f["d1"], f["d2"], (64, 64))
    assert out.shape == (2, 6, 64, 64)


def test_full_width_modules_at_64_input():
    """The spec's module widths for a 64² input (H/4 = 16, H/8 = 8, H/16 = 4)."""
    torch.manual_seed(0)
    with torch.no_grad():
        s3 = torch.randn(2, 1024, 4, 4)
        siem = sr.SIEM(1024, 64).eval()
        em = siem(s3)
        assert em.shape == (2, 64, 4, 4) and ((em > 0) & (em < 1)).all()
        gated = sr.SIEM(1024, 64, channel_mode="gated").eval()(s3)
        assert gated.shape == (2, 64, 4, 4)
        masm = sr.MASM(256).eval()
        assert masm(torch.randn(2, 256, 16, 16)).shape == (2, 256, 16, 16)
        assert masm(torch.randn(2, 256, 16, 24)).shape == (2, 256, 16, 24)
        rgm = sr.RGM(64, 512).eval()
        assert rgm(em, torch.randn(2, 512, 4, 4)).shape == (2, 512, 4, 4)
        assert sr.RGM(64, 256).eval()(em, torch.randn(2, 256, 8, 8)).shape == (2, 256, 8, 8)
        dec = sr.DecoderBlock(64, 512, 512, 256).eval()
        assert dec(em, torch.randn(2, 512, 4, 4), torch.randn(2, 512, 8, 8)).shape == (2, 256, 8, 8)
        mfam = sr.MFAM(512, 256, 128, 128, 6).eval()
        out = mfam(torch.randn(2, 512, 4, 4), torch.randn(2, 256, 8, 8),
                   torch.randn(2, 128, 16, 16), (64, 64))
        assert out.shape == (2, 6, 64, 64)
        trunk = sr.ResNetTrunk(3, 64, (1, 1, 1)).eval()
        feats = trunk(torch.randn(1, 3, 64, 64))
    assert [tuple(t.shape[1:]) for t in feats] == [(64, 32, 32), (256, 16, 16), (512, 8, 8),
                                                   (1024, 4, 4)]


def test_siem_weights_mode_uses_attention_weights_only():
    """'weights': the channel branch sees c (B×C×1×1), so EM = sigmoid(s · c') is a per-channel
    scaling of one spatial map s; 'gated' uses a·c (spatially varying)."""
    torch.manual_seed(0)
    siem = sr.SIEM(32, 16).eval()
    x = torch.randn(1, 32, 6, 6)
    with torch.no_grad():
        em = siem(x)
        a = F.relu(siem.gn(siem.reduce(x)))
        s = a.mean(1, keepdim=True) + a.amax(1, keepdim=True)
    logit = torch.logit(em.clamp(1e-6, 1 - 1e-6))
    # logit(EM) / s is constant over space for each channel
    ratio = logit / s
    assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), atol=1e-3)


def test_masm_attention_is_row_normalised_and_starts_as_identity():
    torch.manual_seed(0)
    att = sr.AdaptiveAttention(32).eval()
    x = torch.randn(2, 32, 8, 12)
    with torch.no_grad():
        a = att.attention(x)
        assert a.shape == (2, 32, 8, 8)
        assert torch.allclose(a.sum(-1), torch.ones(2, 32, 8), atol=1e-5)
        assert torch.equal(att(x), x)                    # γ = 0 at initialisation
        att.gamma.fill_(0.7)
        y = att(x)
        assert y.shape == x.shape and not torch.allclose(y, x)
        # square maps: keys pooled to (1, H) are the spec's (1, W) keys
        sq = torch.randn(1, 32, 10, 10)
        k_spec = att.mlp(F.adaptive_avg_pool2d(sq, (1, 10)))
        q = att.mlp(F.adaptive_avg_pool2d(att.query_conv(sq), (10, 1)))
        spec = torch.softmax(q @ k_spec / (16 ** 0.5), dim=-1)
        assert torch.allclose(att.attention(sq), spec, atol=1e-6)


def test_position_embedding_adapts_to_the_token_grid():
    torch.manual_seed(0)
    vit = sr.Transformer(32, hidden=16, depth=1, heads=2, mlp=32, grid=4).eval()
    assert vit.position(4, 4) is vit.position_embeddings
    assert vit.position(3, 5).shape == (1, 15, 16)
    with torch.no_grad():
        vit.position_embeddings.copy_(torch.arange(16.).view(1, 1, 16).expand(1, 16, 16))
        row = torch.arange(16.).view(1, 1, 16)
        assert torch.allclose(vit.position(6, 2), row.expand(1, 12, 16), atol=1e-5)
        assert vit(torch.randn(1, 32, 3, 5)).shape == (1, 16, 3, 5)


def test_output_follows_input_not_256():
    model = _tiny().eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 128, 48)).shape == (1, 6, 128, 48)


# ---- loss -------------------------------------------------------------------------------------

def _label(size: int = 32) -> torch.Tensor:
    t = torch.zeros(2, size, size, dtype=torch.long)
    t[:, 8:24, 6:20] = 1
    t[1, 20:30, 20:30] = 2
    return t


def _confident(target: torch.Tensor, classes: int = 3) -> torch.Tensor:
    return 100.0 * F.one_hot(target, classes).permute(0, 3, 1, 2).float()


def test_dual_task_loss_zero_for_perfect_positive_for_wrong_boundaries():
    torch.manual_seed(0)
    t = _label()
    assert sr.dual_task_loss(_confident(t), t).item() < 1e-6
    shifted = torch.roll(_confident(t), 4, dims=-1)
    wrong = sr.dual_task_loss(shifted, t).item()
    assert wrong > 0.05
    # soft but correct predictions are much better than a shifted boundary
    assert sr.dual_task_loss(0.05 * _confident(t), t).item() < wrong
    # a prediction with no boundary at all is penalised too
    flat = torch.zeros(2, 3, 32, 32)
    flat[:, 0] = 100.0
    assert sr.dual_task_loss(flat, t).item() > 0.05


def test_dual_task_loss_ignores_unlabelled_pixels_and_has_gradients():
    torch.manual_seed(0)
    t = _label()
    logits = _confident(t)
    logits[:, :, 0:6, :] = torch.roll(logits[:, :, 0:6, :], 1, dims=1)   # wrong in rows 0-5
    bad = sr.dual_task_loss(logits, t).item()
    ignored = t.clone()
    ignored[:, 0:7, :] = sr.IGNORE
    assert bad > 0.01
    assert sr.dual_task_loss(logits, ignored).item() < 1e-6
    assert sr.dual_task_loss(logits, torch.full_like(t, sr.IGNORE)).item() == 0.0
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    loss = sr.dual_task_loss(x, t)
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert torch.isfinite(sr.dual_task_loss(torch.randn(2, 3, 32, 32), t,
                                            faithful_release=True))


def test_gradient_magnitude_of_a_step_edge():
    x = torch.zeros(1, 1, 32, 32)
    x[..., 16:] = 1.0
    g = sr.gradient_magnitude(x)
    assert g.max().item() == pytest.approx(1.0)
    assert (g[..., :, :8] == 0).all() and (g[..., :, 26:] == 0).all()   # radius 4 + 1 band
    assert (g[..., :, 14:18] > 0.5).all()
    assert (sr.gradient_magnitude(torch.full((1, 1, 8, 8), 0.3)) == 0).all()


def test_ce_dual_task_is_ce_plus_dual_task():
    logits, t = torch.randn(2, 3, 32, 32), _label()
    t[0, :2] = sr.IGNORE
    torch.manual_seed(1)
    total = sr.ce_dual_task_loss(logits, t)
    torch.manual_seed(1)
    dual = sr.dual_task_loss(logits, t)
    ce = F.cross_entropy(logits, t, ignore_index=sr.IGNORE)
    assert torch.allclose(total, ce + dual, atol=1e-6)


def test_engine_loss_registry_if_registered():
    from engine.training import losses
    if "ce_dual_task" not in losses.LOSSES:
        pytest.skip("ce_dual_task is not registered in engine/training/losses.py yet")
    logits, t = torch.randn(2, 3, 32, 32), _label()
    torch.manual_seed(3)
    a = losses.build_loss("ce_dual_task")(logits, t)
    torch.manual_seed(3)
    assert torch.allclose(a, sr.ce_dual_task_loss(logits, t), atol=1e-6)


def test_recipe_values():
    r = sr.RECIPE
    assert r["optimizer"] == "adamw" and r["lr"] == 1e-4 and r["weight_decay"] == 5e-4
    assert r["schedule"] == "cosine" and r["eta_min"] < r["lr"]
    assert r["epochs"] == 60 and r["batch_size"] == 16 and r["tile"] == 256
    assert r["loss"] == "ce_dual_task" and r["amp"] is True and r["grad_clip"] > 0
    assert recipe_of("srcbtfusion") == r       # the loop finds it beside the registered builder


# ---- learning ---------------------------------------------------------------------------------

def test_gradient_reaches_every_parameter():
    model = _tiny(num_classes=4).train()
    with torch.no_grad():
        model.masm.attention.gamma.fill_(0.5)    # γ = 0 at init blocks the attention's gradient
    image, target = _squares()
    sr.ce_dual_task_loss(model(image), target).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad
    zero = [n for n, p in model.named_parameters() if not p.grad.abs().sum() > 0]
    assert not zero
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_overfits_one_batch():
    model = _tiny(num_classes=4).train()
    image, target = _squares()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    torch.manual_seed(0)
    for _ in range(70):
        opt.zero_grad()
        loss = sr.ce_dual_task_loss(model(image), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.3 * losses[0], losses[::10]
    model.eval()
    with torch.no_grad():
        pred = model(image).argmax(1)
    assert (pred == target).float().mean() > 0.85


# ---- model file and pretrained weights --------------------------------------------------------

def test_save_load_gives_identical_predictions(tmp_path):
    net = _tiny(4, 6).eval()
    card = default_card("srcbtfusion", 4, 6, hparams=dict(sr.TINY))
    path = save_model(tmp_path / "m.rsmodel", card, net)
    loaded = load_model(path)
    x = torch.randn(1, 4, 64, 96)
    with torch.no_grad():
        assert torch.equal(net(x), loaded.network(x))
    assert isinstance(loaded.network, sr.SRCBTFusionNet)


