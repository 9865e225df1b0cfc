"""Training with a pre-trained encoder: discriminative LR, encoder freeze, backbone normalisation;
the same options with --init (fine-tuning) for any architecture."""
import pytest
import torch

from engine.__main__ import main
from engine.formats.modelfile import load_model, read_card
from engine.models import architecture, build
from engine.training import train
from engine.training.config import make_optimiser
from engine.training.schedule import LRSchedule
from tests.conftest import labelled_scene
from tests.engine.weights.published import random_tensors, resnet_shapes

SMALL = {"base": 4, "depth": 2}
GLC = {"depth": 18, "aspp_channels": 8, "low_level_channels": 4, "decoder_channels": 8}


@pytest.fixture
def scene(tmp_path):
    return labelled_scene(tmp_path, size=128)


def _train(tmp_path, scene, name, **kw):
    image, labels = scene
    opts = dict(images=[str(image)], labels=[str(labels)], out=str(tmp_path / name), tile=32,
                batch_size=8, epochs=2, lr=5e-3, samples_per_epoch=16, device="cpu",
                hparams=dict(SMALL), seed=0)
    opts.update(kw)
    return train(**opts)


def test_every_architecture_names_an_encoder_that_exists():
    for name in ("unet", "fcsiamdiff", "sgsln", "glcnet"):
        net = build(name, in_channels=3, num_classes=2, **(GLC if name == "glcnet" else {}))
        prefixes = architecture(name).encoder
        assert prefixes and any(n.startswith(prefixes) for n, _ in net.named_parameters())


def test_encoder_groups_get_the_scaled_lr_and_can_be_held_at_zero():
    net = build("unet", in_channels=3, num_classes=2, **SMALL)
    hp = {"lr": 1e-3, "weight_decay": 0.0, "optimizer": "adamw", "betas": (0.9, 0.999),
          "encoder_lr_scale": 0.1, "freeze_encoder_epochs": 0}
    opt = make_optimiser(net, hp, "unet")
    enc = [g for g in opt.param_groups if g.get("encoder")]
    rest = [g for g in opt.param_groups if not g.get("encoder")]
    assert enc and rest
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(net.parameters()))
    sched = LRSchedule(opt, "constant", 0, 10)
    assert enc[0]["lr"] == pytest.approx(1e-4) and rest[0]["lr"] == pytest.approx(1e-3)
    sched.hold_encoder(True)
    assert enc[0]["lr"] == 0.0 and rest[0]["lr"] == pytest.approx(1e-3)
    sched.hold_encoder(False)
    assert enc[0]["lr"] == pytest.approx(1e-4)


def test_freeze_with_init_keeps_the_encoder_exactly(tmp_path, scene):
    base = _train(tmp_path, scene, "base.rsmodel", epochs=1)
    tuned = _train(tmp_path, scene, "tuned.rsmodel", init=base["model"],
                   freeze_encoder_epochs=5)
    a = load_model(base["model"]).network.state_dict()
    b = load_model(tuned["model"]).network.state_dict()
    enc = [k for k in a if k.startswith("encoder.")]
    assert enc and all(torch.equal(a[k], b[k]) for k in enc)        # weights and BN statistics
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("decoder."))


def test_backbone_weights_train_with_imagenet_normalisation(tmp_path, scene):
    path = tmp_path / "resnet18-f37072fd.pth"
    state = random_tensors(resnet_shapes((2, 2, 2, 2), bottleneck=False), seed=3)
    torch.save(state, path)
    result = _train(tmp_path, scene, "glc.rsmodel", arch="glcnet", hparams=dict(GLC), epochs=1,
                    backbone_weights=str(path), encoder_lr_scale=0.0)
    card = read_card(result["model"])
    assert card["inputs"]["image"]["mean"] == pytest.approx([255 * 0.485, 255 * 0.456,
                                                             255 * 0.406])
    net = load_model(result["model"]).network
    assert torch.equal(net.backbone.layer2[0].conv1.weight, state["layer2.0.conv1.weight"])


def test_init_model_cli_with_backbone_weights(tmp_path, capsys):
    path = tmp_path / "resnet50.pth"
    state = random_tensors(resnet_shapes(), seed=4)
    torch.save(state, path)
    out = tmp_path / "g.rsmodel"
    assert main(["init-model", "--arch", "glcnet", "--bands", "4", "--classes", "3",
                 "--out", str(out), "--backbone-weights", str(path)]) in (0, None)
    text = capsys.readouterr().out
    assert "[resnet]" in text and "tensors matched" in text
    card = read_card(out)
    assert card["training"]["backbone"]["adapted"]
    net = load_model(out).network
    assert torch.equal(net.backbone.conv1.weight[:, :3], state["conv1.weight"])
    assert main(["init-model", "--arch", "unet", "--bands", "3", "--classes", "3",
                 "--out", str(tmp_path / "u.rsmodel"), "--backbone-weights", str(path)]) == 2
    assert "no pre-trained encoder" in capsys.readouterr().err


def test_fine_tuning_freezes_the_encoder_for_a_third_of_the_epochs_unless_told():
    from engine.training.config import TrainConfig, resolve_recipe

    def recipe(**options):
        return resolve_recipe(TrainConfig(out="m.rsmodel", images=["a.tif"], epochs=9, **options),
                              10)
    assert recipe(init="base.rsmodel")["freeze_encoder_epochs"] == 3
    assert recipe(init="base.rsmodel", freeze_encoder_epochs=0)["freeze_encoder_epochs"] == 0
    assert recipe()["freeze_encoder_epochs"] == 0
