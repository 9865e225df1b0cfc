"""SGSLN (seed-models.md §5): shapes, Siamese weight sharing, channel exchange, size, learning."""
from __future__ import annotations

import pytest
import torch

import engine.models.sgsln as sgsln
from engine.models import architecture
from engine.training.losses import build_loss


def _tiny(in_channels: int = 3, **extra) -> sgsln.SGSLN:
    torch.manual_seed(0)
    return sgsln.build_sgsln(in_channels, 2, **{**sgsln.TINY, **extra})


def test_registered_as_change_network():
    arch = architecture("sgsln")
    assert arch.task == "change"
    assert arch.input_multiple == 16
    assert arch.builder is sgsln.build_sgsln


@pytest.mark.parametrize("bands,h,w", [(3, 64, 64), (4, 96, 128)])
def test_forward_shapes_eval_and_train(bands, h, w):
    model = _tiny(bands)
    t1, t2 = torch.randn(2, bands, h, w), torch.randn(2, bands, h, w)
    model.eval()
    with torch.no_grad():
        out = model(t1, t2)
    assert out.shape == (2, 2, h, w)
    assert torch.isfinite(out).all()
    # two-channel logits [0, l]: softmax of the change class is the sigmoid of the change logit
    assert torch.equal(out[:, 0], torch.zeros_like(out[:, 0]))
    model.train()
    res = model(t1, t2)
    assert set(res) == {"logits", "aux_logits"}
    assert res["logits"].shape == (2, 2, h, w)
    assert len(res["aux_logits"]) == 2
    for aux in res["aux_logits"]:
        assert aux.shape == (2, 2, h // 2, w // 2)


def test_multiclass_heads_when_asked():
    model = sgsln.build_sgsln(3, 3, **sgsln.TINY).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_full_configuration_shapes_at_64():
    model = sgsln.build_sgsln(3).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 2, 64, 64)


def test_exchange_channels_swaps_odd_channels_only():
    a = torch.arange(6.).view(1, 6, 1, 1).expand(2, 6, 3, 3).clone()
    b = -a - 100
    a0, b0 = a.clone(), b.clone()
    x1, x2 = sgsln.exchange_channels(a, b)
    odd, even = [1, 3, 5], [0, 2, 4]
    assert torch.equal(x1[:, even], a[:, even]) and torch.equal(x2[:, even], b[:, even])
    assert torch.equal(x1[:, odd], b[:, odd]) and torch.equal(x2[:, odd], a[:, odd])
    assert torch.equal(a, a0) and torch.equal(b, b0)      # inputs untouched
    # exchanging twice restores; exactly half of the channels moved
    y1, y2 = sgsln.exchange_channels(x1, x2)
    assert torch.equal(y1, a) and torch.equal(y2, b)
    assert (x1 != a).flatten(2).any(-1).sum().item() == 2 * 3


def test_encoder_exchanges_after_e4():
    model = _tiny().eval()
    enc = model.encoder
    t1, t2 = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        f1, f2 = enc(t1, t2)
        e4_1 = enc._to_e4(t1)[3]
        e4_2 = enc._to_e4(t2)[3]
    assert [f.shape[1] for f in f1] == [8, 16, 32, 64, 128]
    assert [f.shape[-1] for f in f1] == [64, 32, 16, 8, 4]
    assert torch.allclose(f1[3][:, 0::2], e4_1[:, 0::2]) and torch.allclose(f1[3][:, 1::2], e4_2[:, 1::2])
    assert torch.allclose(f2[3][:, 1::2], e4_1[:, 1::2])
    # E5 runs on the exchanged tensor
    with torch.no_grad():
        assert torch.allclose(f1[4], enc.blocks[3](f1[3]))
    # earlier levels are not exchanged
    with torch.no_grad():
        assert torch.allclose(f1[2], enc._to_e4(t1)[2]) and torch.allclose(f2[2], enc._to_e4(t2)[2])


def test_siamese_weights_and_date_swap():
    model = _tiny().eval()
    # one encoder / decoder / aux head object serves both dates (no per-date copies)
    assert isinstance(model.encoder, sgsln.SiameseEncoder)
    calls = {"stem": 0, "e5": 0, "decoder": 0, "aux": 0}
    hooked = {"stem": model.encoder.stem, "e5": model.encoder.blocks[3],
              "decoder": model.decoder, "aux": model.aux_head}
    for key, module in hooked.items():
        module.register_forward_hook(lambda *_, key=key: calls.__setitem__(key, calls[key] + 1))
    t1, t2 = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    model.train()
    with torch.no_grad():
        model(t1, t2)
    assert calls == {"stem": 2, "e5": 2, "decoder": 2, "aux": 2}   # the same modules, both dates
    model.eval()
    with torch.no_grad():
        a1, a2 = model.encoder(t1, t2)
        b1, b2 = model.encoder(t2, t1)
        for x, y in zip(a1, b2):
            assert torch.allclose(x, y, atol=1e-6)
        for x, y in zip(a2, b1):
            assert torch.allclose(x, y, atol=1e-6)
        # the change output depends on the date order (DPFA weights the dates differently) …
        assert not torch.allclose(model(t1, t2), model(t2, t1))
    # … while the per-date auxiliary maps just swap places (same weights for both dates)
    model.train()
    for m in model.modules():
        if isinstance(m, (torch.nn.Dropout, torch.nn.BatchNorm2d)):
            m.eval()
    with torch.no_grad():
        r12, r21 = model(t1, t2)["aux_logits"], model(t2, t1)["aux_logits"]
    assert torch.allclose(r12[0], r21[1], atol=1e-6) and torch.allclose(r12[1], r21[0], atol=1e-6)


def test_full_parameter_count_matches_spec():
    model = sgsln.build_sgsln(3)
    n = sum(p.numel() for p in model.parameters())
    assert n == sgsln.FULL_PARAMS
    assert abs(n - sgsln.SPEC_PARAMS) / sgsln.SPEC_PARAMS < 0.02


def test_recipe_values():
    r = sgsln.RECIPE
    assert r["optimizer"] == "adamw" and r["lr"] == 2e-4 and r["weight_decay"] == 1e-3
    assert r["schedule"] == "plateau" and r["plateau_factor"] == 0.1 and r["plateau_patience"] == 12
    assert r["loss"] == "bce_dice" and r["aux_weight"] == 0.2 and r["date_swap"] is True
    assert r["grad_clip"] == 20.0 and r["batch_size"] == 16


def _change_pair(n: int = 2, size: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    t1 = 0.3 * torch.randn(n, 3, size, size, generator=g)
    t2 = t1 + 0.05 * torch.randn(n, 3, size, size, generator=g)
    target = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        for _ in range(3):
            y, x = torch.randint(0, size - 16, (2,), generator=g).tolist()
            s = int(torch.randint(8, 16, (1,), generator=g))
            t2[i, :, y:y + s, x:x + s] = 2.0
            target[i, y:y + s, x:x + s] = 1
    return t1, t2, target


def test_gradient_reaches_every_parameter():
    model = _tiny().train()
    t1, t2, target = _change_pair()
    build_loss("bce_dice", 0.2)(model(t1, t2), target).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_overfits_one_batch():
    model = _tiny().train()
    t1, t2, target = _change_pair()
    loss_fn = build_loss("bce_dice", 0.2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss = loss_fn(model(t1, t2), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-5:]) < 0.3 * losses[0], losses[::10]
    model.eval()
    with torch.no_grad():
        pred = model(t1, t2).argmax(1)
    assert (pred == target).float().mean() > 0.9
