"""A published SAM checkpoint's image encoder → VSGNet's frozen encoder, by path."""
import torch

from engine.models import build
from engine.models.sam import CONFIGS
from engine.models.vsgnet import TINY
from engine.weights import inspect_backbone, load_backbone

from .published import random_tensors, sam_shapes


def test_vsgnet_with_a_sam_encoder(tmp_path):
    c = CONFIGS["tiny"]
    state = random_tensors(sam_shapes(c.dim, c.depth, c.heads, c.global_blocks), seed=5)
    path = tmp_path / "sam_checkpoint.pth"
    torch.save(state, path)
    info = inspect_backbone("vsgnet", path)
    assert info.layout == "sam" and info.hparams["vit"] == "sam_tiny"
    tiny = {k: v for k, v in TINY.items() if k != "vit"}
    net = build("vsgnet", in_channels=3, num_classes=3, aux_channels=1, **tiny, **info.hparams)
    report = load_backbone(net, "vsgnet", path)
    frozen = net.frozen_vits[0].vit.state_dict()
    enc = {k: v for k, v in state.items() if k.startswith("image_encoder.")}
    assert set(frozen) == set(enc) and all(torch.equal(frozen[k], v) for k, v in enc.items())
    assert len(report.matched) == len(enc)
    out = net(torch.randn(1, 3, 64, 64), torch.randn(1, 1, 64, 64))     # 64² → 4×4 tokens
    assert out.shape == (1, 3, 64, 64)
    assert not any(p.requires_grad for p in net.frozen_vits[0].parameters())
