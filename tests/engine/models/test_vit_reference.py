"""The engine's DINOv2 ViT computes what DINOv2's reference code computes.

The same random weights go into both (the engine's state dict loads strictly into the
reference, so every released ``dinov2_vit*14_pretrain.pth`` maps one to one); the normalised
patch tokens must agree within float tolerance, at the position table's own grid and at another
one (bicubic position interpolation).  The reference (Meta's ``dinov2`` code as packaged on
PyPI, model code only) is a test-only dependency; the test skips without it.
"""
from __future__ import annotations

from functools import partial

import pytest
import torch

from engine.models.vit import build_vit

vision_transformer = pytest.importorskip(
    "dinov2.models.vision_transformer",
    reason="DINOv2's reference code is not installed (see requirements-test-nodeps.txt)")
layers = pytest.importorskip("dinov2.layers")


def reference(config) -> torch.nn.Module:
    return vision_transformer.DinoVisionTransformer(
        img_size=config.img_size, patch_size=config.patch_size, embed_dim=config.embed_dim,
        depth=config.depth, num_heads=config.num_heads, mlp_ratio=config.mlp_ratio,
        block_fn=partial(layers.NestedTensorBlock, attn_class=layers.MemEffAttention),
        init_values=1.0, block_chunks=0).eval()


@pytest.mark.parametrize("size", [56, 84])  # the table's own 4×4 grid, and 6×6 (interpolated)
def test_vit_matches_dinov2_reference(size):
    ours = build_vit("tiny", seed=2).eval()
    with torch.no_grad():  # layer scales start at 1 in both: make them count
        for name, p in ours.named_parameters():
            if name.endswith(("gamma", "cls_token")):
                p.normal_(0.5, 0.3)
    ref = reference(ours.config)
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = ref.forward_features(x)["x_norm_patchtokens"]
        got = ours(x)
    grid = size // 14
    assert got.shape == (2, ours.config.embed_dim, grid, grid)
    got = got.flatten(2).transpose(1, 2)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)
    other = build_vit("tiny", seed=3).eval()
    with torch.no_grad():
        assert not torch.allclose(other(x).flatten(2).transpose(1, 2), want, atol=1e-3)
