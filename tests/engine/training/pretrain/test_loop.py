"""The pre-training stage: falling losses, the model file and its card, fine-tuning from it,
cancel, exact resume and clear errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import engine.models.glcnet as glcnet
from engine.formats.modelfile import load_model, read_card
from engine.jobs import Cancelled, InputError, ModelFileError
from engine.training import train
from engine.training.checkpoints import PRETRAIN_FORMAT, checkpoint_path, load_checkpoint
from engine.training.pretrain.loop import pretrain
from tests.conftest import labelled_scene, write_raster
from tests.engine.training.pretrain.conftest import NET, UNET, rasters


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pre")
    images = rasters(folder)
    messages = []
    result = pretrain(images, "glcnet", str(folder / "pre.rsmodel"), epochs=3,
                      batch_size=4, crop=48, patch_size=6, patch_num=3, lr=2e-3,
                      samples_per_epoch=40, device="cpu", hparams=dict(NET), seed=0,
                      progress=lambda f, m: messages.append((f, m)))
    return folder, images, result, messages


def test_pretraining_losses_are_finite_and_fall(pretrained):
    _, _, result, messages = pretrained
    steps = np.array(result["step_losses"])
    assert steps.shape == (30, 3) and np.isfinite(steps).all()
    first, last = steps[:5].mean(0), steps[-5:].mean(0)
    assert last[0] < first[0]                 # total
    assert last[1] < first[1]                 # global style
    assert last[2] < first[2]                 # local matching
    assert np.allclose(steps[:, 0], 0.5 * steps[:, 1] + 0.5 * steps[:, 2], rtol=1e-5)
    fractions = [f for f, _ in messages if f >= 0]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_pretrained_model_file_and_card(pretrained):
    folder, images, result, _ = pretrained
    card = read_card(result["model"])
    assert card["task"] == "pretrained" and card["architecture"] == "glcnet"
    assert card["classes"] == []
    assert card["hparams"] == {"in_channels": 3, "num_classes": 64, **NET}
    image = card["inputs"]["image"]
    assert [b["index"] for b in image["bands"]] == [1, 2, 3]
    assert len(image["mean"]) == 3 and all(40 < m < 220 for m in image["mean"])
    assert all(s > 1 for s in image["std"]) and image["dtype"] == "uint8"
    assert isinstance(card["tile_size"], int) and card["tile_size"] % 16 == 0
    training = card["training"]
    assert training["epochs"] == 3 and len(training["history"]) == 3
    assert training["best_epoch"] == result["best_epoch"]
    assert {"loss", "global_loss", "local_loss", "lr"} <= set(training["history"][0])
    assert training["hyper_parameters"]["patch_size"] == 6
    # only the segmentation network is saved (no projection heads)
    model = load_model(result["model"])
    assert set(model.network.state_dict()) == set(glcnet.build_glcnet(3, 64, **NET).state_dict())
    ckpt = load_checkpoint(result["checkpoint"], PRETRAIN_FORMAT)
    assert ckpt["epoch"] == 3 and ckpt["step"] == 30
    assert any(k.startswith("global_head.") for k in ckpt["objective"])
    # the two kinds of checkpoint are not confused
    with pytest.raises(ModelFileError):
        load_checkpoint(result["checkpoint"])
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_fine_tuning_loads_the_pretrained_encoder(pretrained, tmp_path):
    _, _, result, _ = pretrained
    image, labels = labelled_scene(tmp_path, size=96)
    out = train(images=[str(image)], labels=[str(labels)], out=str(tmp_path / "ft.rsmodel"),
                arch="glcnet", init=result["model"], tile=48, batch_size=4, epochs=1,
                samples_per_epoch=4, lr=1e-12, weight_decay=0.0, device="cpu",
                hparams=dict(NET), val_fraction=0.25)
    card = read_card(out["model"])
    init = card["training"]["init"]
    assert init["skipped_names"] == ["classifier.bias", "classifier.weight"]
    assert init["skipped"] == 2
    pre = load_model(result["model"]).network
    fine = load_model(out["model"]).network
    assert fine.classifier.weight.shape[0] == 3 != pre.classifier.weight.shape[0]
    pre_params = dict(pre.named_parameters())
    for name, value in fine.named_parameters():
        if name.startswith("classifier."):
            continue
        assert torch.allclose(value, pre_params[name], atol=1e-6), name


def test_cancel_leaves_nothing(tmp_path):
    images = rasters(tmp_path, n=2, size=64)
    out = tmp_path / "c.rsmodel"
    with pytest.raises(Cancelled):
        pretrain(images, "unet", str(out), epochs=2, batch_size=2, crop=32, patch_size=4,
                 patch_num=2, samples_per_epoch=8, device="cpu", hparams=dict(UNET),
                 cancelled=lambda: True)
    assert not out.exists() and not checkpoint_path(out).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unet_pretraining_resume_is_exact(tmp_path):
    images = rasters(tmp_path, n=2, size=64, seed=1)
    opts = dict(epochs=3, batch_size=3, crop=32, patch_size=4, patch_num=2,
                samples_per_epoch=6, device="cpu", hparams=dict(UNET), lr=1e-2, seed=3)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    straight = pretrain(images, "unet", str(tmp_path / "a" / "m.rsmodel"), **opts)
    assert read_card(straight["model"])["architecture"] == "unet"
    assert read_card(straight["model"])["hparams"]["num_classes"] == 64
    calls = {"n": 0}

    def stop_in_epoch_three():
        calls["n"] += 1
        return calls["n"] > 5            # 2 batches per epoch: stops early in epoch 3

    out_b = tmp_path / "b" / "m.rsmodel"
    with pytest.raises(Cancelled):
        pretrain(images, "unet", str(out_b), cancelled=stop_in_epoch_three, **opts)
    ckpt = checkpoint_path(out_b)
    assert load_checkpoint(ckpt, PRETRAIN_FORMAT)["epoch"] == 2
    assert out_b.exists()                # the best model so far is complete, nothing half-written
    resumed = pretrain(images, "unet", str(out_b), resume=str(ckpt), **opts)
    assert resumed["epochs_run"] == 3 and len(resumed["step_losses"]) == 2
    a = load_checkpoint(checkpoint_path(straight["model"]), PRETRAIN_FORMAT)
    b = load_checkpoint(ckpt, PRETRAIN_FORMAT)
    assert a["step"] == b["step"] == 6
    assert all(torch.equal(a["objective"][k], b["objective"][k]) for k in a["objective"])
    history_a, history_b = json.loads(a["history"]), json.loads(b["history"])
    assert [h["loss"] for h in history_a] == [h["loss"] for h in history_b]


@pytest.mark.parametrize("case", ["none", "bands", "change_arch", "patch", "crop"])
def test_bad_inputs_give_clear_errors(tmp_path, case):
    three = rasters(tmp_path, n=1, size=64)
    opts = dict(epochs=1, batch_size=2, crop=32, patch_size=4, samples_per_epoch=2,
                device="cpu", hparams=dict(UNET))
    images, arch = three, "unet"
    if case == "none":
        images = []
    elif case == "bands":
        images = three + [str(write_raster(tmp_path / "two.tif",
                                           np.ones((2, 64, 64), np.uint8)))]
    elif case == "change_arch":
        arch, opts["hparams"] = "sgsln", {}
    elif case == "patch":
        opts["patch_size"] = 20
    else:
        opts["crop"] = 30
    with pytest.raises(InputError) as err:
        pretrain(images, arch, str(tmp_path / "x.rsmodel"), **opts)
    assert {"none": "at least one image", "bands": "same number of bands",
            "change_arch": "segmentation network", "patch": "too large",
            "crop": "multiple of 16"}[case] in str(err.value)
    assert not (tmp_path / "x.rsmodel").exists()
