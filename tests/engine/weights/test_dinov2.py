"""DINOv2 checkpoints (facebookresearch layout) → VSGNet's frozen encoder, by path."""
import pytest
import torch

from engine.jobs import ModelFileError
from engine.models import build
from engine.models.vit import expected_shapes
from engine.models.vsgnet import TINY
from engine.weights import inspect_backbone, load_backbone

from .published import random_tensors


def test_vsgnet_frozen_vit_equals_the_file(tmp_path):
    # dinov2_vits14_pretrain.pth: cls_token, pos_embed [1, 1370, 384], blocks.{0-11}.…, mask_token
    state = random_tensors(expected_shapes("vits14"), seed=2)
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(state, path)
    hp = inspect_backbone("vsgnet", path).hparams
    assert hp["vit"] == "vits14" and hp["vit_weights"] == str(path.resolve())
    tiny = {k: v for k, v in TINY.items() if k != "vit"}
    net = build("vsgnet", in_channels=3, num_classes=3, aux_channels=1, **tiny, **hp)
    report = load_backbone(net, "vsgnet", path)
    vit = net.frozen_vits[0].vit.state_dict()
    for key, value in state.items():
        assert torch.equal(vit[key], value), key
    assert len(report.matched) == len(state) and report.normalisation == "imagenet"


def test_dinov2_names_with_foreign_shapes_are_refused(tmp_path):
    state = random_tensors(expected_shapes("tiny"), seed=0)
    state["pos_embed"] = torch.zeros(1, 10, state["pos_embed"].shape[-1])
    path = tmp_path / "odd.pth"
    torch.save(state, path)
    with pytest.raises(ModelFileError, match="not the shapes"):
        inspect_backbone("vsgnet", path)
    with pytest.raises(ModelFileError, match="does not fit 'glcnet'"):
        inspect_backbone("glcnet", path)
