import pytest
import torch

from engine.training.config import TrainConfig, resolve_recipe
from engine.training.schedule import WARMUP_MAX_SHARE, LRSchedule, fit_to_run


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
    assert hp["warmup_steps"] == 14 and hp["loss"] == "bce_dice"  # 500, capped at 10 % of 140
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


def test_cafe_recipe_steps_lr_by_0_8_after_two_thirds_of_the_run():
    hp = resolve_recipe(TrainConfig(out="x", images=["a"], arch="cafe"), steps_per_epoch=3)
    assert hp["schedule"] == "step" and hp["step_gamma"] == 0.8
    assert hp["step_every"] == 40  # 100 of the recipe's 150 epochs: 2/3 of 20 epochs × 3 steps


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


def _peak_reached_at(hp, steps_per_epoch, epochs):
    s = LRSchedule(_opt(), hp["schedule"], hp["warmup_steps"], steps_per_epoch * epochs,
                   warmup_start=hp["warmup_start"], step_every=hp["step_every"],
                   step_gamma=hp["step_gamma"])
    lrs = []
    for _ in range(steps_per_epoch * epochs):
        lrs.append(s.lr)
        s.step()
    return lrs.index(max(lrs)), lrs


@pytest.mark.parametrize("arch", ["sgsln", "vsgnet", "unet", "cafe", "srcbtfusion"])
def test_every_recipe_warms_up_within_a_short_run(arch):
    """11 LEVIR pairs make 9 steps an epoch: SGSLN's 500-step warm-up must end in a 30-epoch
    fine-tune (it used to reach 2.2e-5 of a 2e-4 peak after 6 epochs)."""
    task = "change" if arch == "sgsln" else "segmentation"
    cfg = TrainConfig(out="x", images=["a"], arch=arch, task=task, epochs=30, init="base.rsmodel")
    hp = resolve_recipe(cfg, steps_per_epoch=9)
    peak, lrs = _peak_reached_at(hp, 9, 30)
    assert peak <= WARMUP_MAX_SHARE * 270
    assert lrs[6 * 9] > 0.5 * max(lrs)  # after 6 epochs the rate is near its peak, not 1 %


def test_run_lengths_scale_with_the_run_and_the_user_wins():
    sgsln = {"warmup_steps": 500, "epochs": 500, "schedule": "plateau", "plateau_patience": 12}
    long = fit_to_run(sgsln, steps_per_epoch=28, epochs=500, early_stop_patience=50)
    assert long.warmup_steps == 500 and long.plateau_patience == 12  # the paper's run: as written
    short = fit_to_run(sgsln, steps_per_epoch=9, epochs=30, early_stop_patience=10)
    assert short.warmup_steps == 27 and short.total_steps == 270
    assert short.plateau_patience == 5  # reduces before early stopping ends the run
    assert fit_to_run(sgsln, 9, 30, 10, warmup_steps=100).warmup_steps == 100
    vsg = fit_to_run({"warmup_epochs": 10, "epochs": 300}, steps_per_epoch=10, epochs=30,
                     early_stop_patience=10)
    assert vsg.warmup_steps == 10  # 10 of 300 epochs: 1/30 of the run's 300 steps
    cafe = fit_to_run({"lr_step_epochs": 100, "epochs": 150}, 10, 30, 10)
    assert cafe.step_every == 200


def test_resize_keeps_the_step_and_applies_new_lengths():
    s = LRSchedule(_opt(), "poly", warmup_steps=10, total_steps=100)
    for _ in range(5):
        s.step()
    assert s.lr == pytest.approx(0.6)
    s.resize(fit_to_run({}, steps_per_epoch=2, epochs=10, early_stop_patience=10))
    assert s.warmup_steps == 2 and s.total_steps == 20 and s.step_count == 5
    assert s.lr == pytest.approx((1 - 3 / 18) ** 0.9)


def test_sensor_augmentation_defaults_to_radiometry_without_zoom_and_checks_shares():
    from engine.jobs import InputError
    from engine.training.config import SENSOR_AUGMENT, sensor_plan
    plan = sensor_plan(TrainConfig(out="m", images=["a"]))
    assert (plan.scale_p, plan.shift_p, plan.share) == (0.0, 1.0, 1.0) == (
        SENSOR_AUGMENT.scale_p, SENSOR_AUGMENT.shift_p, SENSOR_AUGMENT.share)
    old = sensor_plan(TrainConfig(out="m", images=["a"], scale_augment_p=1.0))
    assert (old.scale_p, old.shift_p) == (1.0, 1.0)
    assert sensor_plan(TrainConfig(out="m", images=["a"], sensor_augment=False)) is None
    with pytest.raises(InputError, match="--sensor-augment-share must be between 0 and 1"):
        sensor_plan(TrainConfig(out="m", images=["a"], sensor_augment_share=30))
