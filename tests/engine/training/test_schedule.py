import pytest
import torch

from engine.training.config import TrainConfig, resolve_recipe
from engine.training.schedule import LRSchedule


def _opt(lr=1.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_warmup_then_poly_decay():
    s = LRSchedule(_opt(), "poly", warmup_steps=4, total_steps=20)
    lrs = [s.lr]
    for _ in range(19):
        s.step()
        lrs.append(s.lr)
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:])) and lrs[-1] < 0.2


def test_plateau_reduces_after_patience_and_resumes_exactly():
    s = LRSchedule(_opt(), "plateau", warmup_steps=0, total_steps=10, plateau_factor=0.1,
                   plateau_patience=2)
    for metric in (0.5, 0.6, 0.6, 0.6):
        s.epoch_end(metric)
    assert s.lr == pytest.approx(1.0)
    s.epoch_end(0.6)
    assert s.lr == pytest.approx(0.1)
    t = LRSchedule(_opt(), "plateau", 0, 10, plateau_factor=0.1, plateau_patience=2)
    t.load_state_dict(s.state_dict())
    assert t.lr == pytest.approx(0.1) and t.state_dict() == s.state_dict()


def test_recipe_gives_defaults_but_the_user_wins():
    cfg = TrainConfig(out="x.rsmodel", images=["a.tif"], task="change", arch="sgsln")
    hp = resolve_recipe(cfg, steps_per_epoch=7)
    assert hp["lr"] == 2e-4 and hp["schedule"] == "plateau" and hp["grad_clip"] == 20.0
    assert hp["warmup_steps"] == 500 and hp["loss"] == "bce_dice"
    cfg.lr, cfg.warmup_steps = 1e-3, 3
    hp = resolve_recipe(cfg, steps_per_epoch=7)
    assert hp["lr"] == 1e-3 and hp["warmup_steps"] == 3
    unet = resolve_recipe(TrainConfig(out="x", images=["a"]), steps_per_epoch=7)
    assert unet["lr"] == 1e-3 and unet["warmup_steps"] == 7 and unet["loss"] == "ce"


def test_recipe_optimizer_is_built():
    from engine.training.config import make_optimiser
    net = torch.nn.Linear(2, 2)
    cafe = resolve_recipe(TrainConfig(out="x", images=["a"], arch="cafe"), steps_per_epoch=3)
    opt = make_optimiser(net, cafe)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    assert isinstance(make_optimiser(net, resolve_recipe(TrainConfig(out="x", images=["a"]), 3)),
                      torch.optim.AdamW)


def test_step_schedule_multiplies_by_gamma_every_step_interval():
    s = LRSchedule(_opt(), "step", warmup_steps=2, total_steps=100, step_every=5, step_gamma=0.8)
    lrs = [s.lr]
    for _ in range(13):
        s.step()
        lrs.append(s.lr)
    assert lrs[:2] == pytest.approx([0.5, 1.0])  # warm-up
    assert lrs[2:7] == pytest.approx([1.0] * 5)
    assert lrs[7:12] == pytest.approx([0.8] * 5) and lrs[12] == pytest.approx(0.64)


def test_cafe_recipe_steps_lr_by_0_8_every_100_epochs():
    hp = resolve_recipe(TrainConfig(out="x", images=["a"], arch="cafe"), steps_per_epoch=3)
    assert hp["schedule"] == "step" and hp["step_every"] == 300 and hp["step_gamma"] == 0.8


def test_architecture_parameter_groups_reach_the_optimiser():
    """VSGNet publishes no-decay groups (norms, biases); other architectures decay everything."""
    from engine.models import build
    from engine.training.config import make_optimiser
    net = build("unet", in_channels=3, num_classes=2, base=4, depth=2)
    assert {p.ndim for p in net.parameters()} >= {1, 4}
    hp = resolve_recipe(TrainConfig(out="x", images=["a"], arch="vsgnet"), steps_per_epoch=3)
    groups = make_optimiser(net, hp, "vsgnet").param_groups
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]
    decayed = {id(p) for p in groups[0]["params"]}
    assert all((id(p) in decayed) == (p.ndim >= 2) for p in net.parameters())
    plain = make_optimiser(net, hp, "unet").param_groups
    assert len(plain) == 1 and plain[0]["weight_decay"] == 0.01
