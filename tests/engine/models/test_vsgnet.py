"""VSGNet (seed-models.md §4): shapes, frozen foundation encoder, learning, model files, loss."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import engine.models.vsgnet as vsg
from engine.formats.card import default_card
from engine.jobs import InputError
from engine.formats.modelfile import load_model, save_model
from engine.models import architecture
from engine.models.vit import expected_shapes
from engine.training.config import make_optimiser, recipe_of
from engine.training.losses import cross_entropy, dice


@pytest.fixture(autouse=True)
def _quiet_one_thread():
    """One intra-op thread (the machine is shared) and no random-ViT warning noise."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
    torch.set_num_threads(before)


def _tiny(in_channels: int = 3, num_classes: int = 4, aux_channels: int = 1, **extra):
    torch.manual_seed(0)
    return vsg.build_vsgnet(in_channels, num_classes, aux_channels, **{**vsg.TINY, **extra})


def _weights_file(path, name="tiny_reg", seed=0):
    g = torch.Generator().manual_seed(seed)
    torch.save({k: torch.randn(s, generator=g) * 0.05 for k, s in expected_shapes(name).items()},
               path)
    return path


def test_registered_segmentation_network():
    arch = architecture("vsgnet")
    assert arch.task == "segmentation" and arch.input_multiple == 32
    assert arch.builder is vsg.build_vsgnet


@pytest.mark.parametrize("bands,aux,h,w", [(3, 1, 64, 64), (4, 3, 64, 96), (3, 2, 70, 90)])
def test_forward_shapes(bands, aux, h, w):
    net = _tiny(bands, 5, aux)
    image, structure = torch.randn(2, bands, h, w), torch.randn(2, aux, h, w)
    net.eval()
    with torch.no_grad():
        out = net(image=image, aux=structure)
    assert out.shape == (2, 5, h, w) and torch.isfinite(out).all()
    net.train()
    assert net(image=image, aux=structure).shape == (2, 5, h, w)


def test_frozen_encoder_gets_no_gradient_and_stays_in_eval():
    net = _tiny().train()
    (frozen,) = net.frozen_vits
    assert not frozen.training
    out = net(image=torch.randn(2, 3, 64, 64), aux=torch.randn(2, 1, 64, 64))
    vsg.vsgnet_loss(out, torch.randint(0, 4, (2, 64, 64))).backward()
    assert all(p.grad is None and not p.requires_grad for p in frozen.parameters())
    assert not frozen.training and not any(m.training for m in frozen.modules())
    # every trainable parameter is used (DDP without find_unused_parameters)
    unused = [n for n, p in net.named_parameters() if p.grad is None]
    assert unused == []
    # the frozen encoder is outside the module tree, but follows device/dtype moves
    names = list(net.state_dict())
    assert not any(k.startswith(("blocks.", "pos_embed", "cls_token")) for k in names)
    assert not any(".blocks.0.attn.qkv" in k for k in names)
    assert {id(p) for p in frozen.parameters()}.isdisjoint(id(p) for p in net.parameters())
    net.double()
    assert frozen.vit.pos_embed.dtype == torch.float64


def test_one_or_two_frozen_encoders_and_release_branch():
    shared = _tiny()
    assert len(shared.frozen_vits) == 1
    two = _tiny(aux_vit="tiny", vit_branch="release").eval()
    assert len(two.frozen_vits) == 2
    assert two.frozen_vits[1].config.name == "tiny"
    with torch.no_grad():
        assert two(image=torch.randn(1, 3, 64, 64), aux=torch.randn(1, 1, 64, 64)).shape == \
            (1, 4, 64, 64)


def test_full_configuration_parameter_count():
    with torch.device("meta"):
        net = vsg.build_vsgnet(3, 6, 1)
    assert sum(p.numel() for p in net.parameters()) == vsg.FULL_PARAMS
    assert net.frozen_parameter_count() == 86_583_552       # DINOv2 ViT-B/14 with registers
    assert [s.blocks.__len__() for s in net.stages] == [3, 3, 12, 2]


def test_one_batch_overfit():
    net = _tiny().train()
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    target = ((yy // 16 + xx // 16) % 4).expand(2, 64, 64).clone()
    image = torch.randn(2, 3, 64, 64, generator=g) * 0.1
    image[:, 0] += target.float() - 1.5
    structure = torch.randn(2, 1, 64, 64, generator=g)
    target[:, :4, :4] = 255
    opt = torch.optim.AdamW(vsg.param_groups(net, 0.0), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = vsg.vsgnet_loss(net(image=image, aux=structure), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.3 * losses[0], losses


def test_loss_recipe_and_param_groups():
    logits, target = torch.randn(2, 4, 8, 8), torch.randint(0, 4, (2, 8, 8))
    target[0, 0, 0] = 255
    expected = 0.5 * dice(logits, target) + 0.5 * cross_entropy(logits, target, label_smoothing=0.1)
    assert torch.allclose(vsg.vsgnet_loss(logits, target), expected)
    assert torch.allclose(vsg.vsgnet_loss({"logits": logits}, target), expected)
    assert not torch.allclose(expected, 0.5 * dice(logits, target)
                              + 0.5 * cross_entropy(logits, target))
    r = vsg.RECIPE
    assert (r["lr"], r["weight_decay"], r["epochs"], r["batch_size"]) == (8e-5, 0.01, 300, 16)
    assert (r["schedule"], r["warmup_epochs"], r["loss"], r["label_smoothing"]) == \
        ("poly", 10, "vsgnet", 0.1)
    net = _tiny()
    decay, no_decay = vsg.param_groups(net, 0.01)
    gammas = {id(p) for n, p in net.named_parameters() if n.endswith("gamma")}
    assert gammas and gammas <= {id(p) for p in no_decay["params"]}
    assert all(p.ndim >= 2 for p in decay["params"]) and no_decay["weight_decay"] == 0.0
    # the training loop finds both beside the registered builder
    assert recipe_of("vsgnet") == r
    opt = make_optimiser(net, {"lr": 1e-4, "weight_decay": 0.01, "optimizer": "adamw",
                               "betas": (0.9, 0.999)}, arch="vsgnet")
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]


def test_random_encoder_warns_once(monkeypatch):
    monkeypatch.setattr(vsg.foundation, "_RANDOM_WARNED", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _tiny()
        _tiny()
    messages = [str(w.message) for w in caught if "no foundation weights" in str(w.message)]
    assert len(messages) == 1 and "randomly initialised" in messages[0]


def _card(hparams: dict) -> dict:
    card = default_card("vsgnet", 3, 4, hparams={"aux_channels": 1, **hparams})
    card["inputs"]["aux"] = {"bands": [{"index": 1, "name": "edges"}], "dtype": "uint8",
                             "mean": [122.4], "std": [71.4], "nodata": 255}
    return card


def test_model_file_without_weights_reloads_identically(tmp_path):
    hp = dict(vsg.TINY)
    net = _tiny().eval()
    path = save_model(tmp_path / "v.rsmodel", _card(hp), net)
    trainable_bytes = sum(v.numel() * v.element_size() for v in net.state_dict().values())
    frozen_bytes = sum(p.numel() * 4 for p in net.frozen_vits[0].parameters())
    assert path.stat().st_size < trainable_bytes + 64_000 < trainable_bytes + frozen_bytes
    loaded = load_model(path).network
    x, a = torch.randn(1, 3, 64, 64), torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(image=x, aux=a), loaded(image=x, aux=a))


def test_model_file_with_foundation_weights(tmp_path, monkeypatch):
    weights = _weights_file(tmp_path / "dinov2_tiny_reg.pth")
    hp = {**vsg.TINY, "vit_weights": str(weights)}
    torch.manual_seed(0)
    net = vsg.build_vsgnet(3, 4, 1, **hp).eval()
    assert net.frozen_vits[0].source == str(weights)
    path = save_model(tmp_path / "v.rsmodel", _card(hp), net)
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
    assert len(keys) == len(net.state_dict())
    assert not any("attn.qkv" in k or k.endswith("pos_embed") for k in keys)
    x, a = torch.randn(1, 3, 64, 64), torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        reference = net(image=x, aux=a)
        assert torch.equal(load_model(path).network(image=x, aux=a), reference)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    weights.rename(moved / weights.name)
    monkeypatch.delenv(vsg.FOUNDATION_DIR_ENV, raising=False)
    with pytest.raises(InputError, match=r"dinov2_tiny_reg\.pth not found.*RS_SEG_FOUNDATION_DIR"):
        load_model(path)
    monkeypatch.setenv(vsg.FOUNDATION_DIR_ENV, str(moved))
    with torch.no_grad():
        assert torch.equal(load_model(path).network(image=x, aux=a), reference)


def test_fingerprint_guards_against_other_weights(tmp_path):
    from engine.models.vit import weights_fingerprint
    good = _weights_file(tmp_path / "a.pth", seed=0)
    other = _weights_file(tmp_path / "b.pth", seed=1)
    fp = weights_fingerprint(good)
    vsg.build_vsgnet(3, 4, 1, **{**vsg.TINY, "vit_weights": str(good), "vit_fingerprint": fp})
    with pytest.raises(InputError, match="differ from those the model was trained with"):
        vsg.build_vsgnet(3, 4, 1, **{**vsg.TINY, "vit_weights": str(other), "vit_fingerprint": fp})


def test_structure_modality_changes_the_output():
    net = _tiny().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a = net(image=x, aux=torch.zeros(1, 1, 64, 64))
        b = net(image=x, aux=F.pad(torch.ones(1, 1, 32, 32), (16, 16, 16, 16)))
    assert not torch.allclose(a, b)
