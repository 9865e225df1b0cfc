"""The engine's SAM computes what the published segment-anything code computes.

Both networks get the same random weights (the engine's state dict loads strictly into the
reference, so every published checkpoint maps one to one) and the same image and point prompt;
the image embedding, the mask logits and the IoU scores must agree within float tolerance.
segment-anything is a test-only reference (requirements-test.txt); the test skips without it.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from functools import partial

import pytest
import torch

from engine.models.sam import CONFIGS, build_sam

SIZE = 256  # a 16×16 token grid: windowed (14, padded) and global attention both run


def reference_modeling(monkeypatch):
    """``segment_anything.modeling`` without the package's __init__, which imports the
    predictor and through it torchvision (not needed for the networks themselves)."""
    spec = importlib.util.find_spec("segment_anything")
    if spec is None:
        pytest.skip("segment-anything is not installed (pip install -r requirements-test.txt)")
    package = types.ModuleType("segment_anything")
    package.__path__ = list(spec.submodule_search_locations)
    monkeypatch.setitem(sys.modules, "segment_anything", package)
    for name in [m for m in sys.modules if m.startswith("segment_anything.")]:
        monkeypatch.delitem(sys.modules, name)
    return importlib.import_module("segment_anything.modeling")


def reference_sam(modeling, config):
    grid = SIZE // 16
    return modeling.Sam(
        image_encoder=modeling.ImageEncoderViT(
            depth=config.depth, embed_dim=config.dim, img_size=SIZE, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=config.heads,
            patch_size=16, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=config.global_blocks, window_size=14, out_chans=256),
        prompt_encoder=modeling.PromptEncoder(embed_dim=256, image_embedding_size=(grid, grid),
                                              input_image_size=(SIZE, SIZE), mask_in_chans=16),
        mask_decoder=modeling.MaskDecoder(
            num_multimask_outputs=3,
            transformer=modeling.TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048,
                                                   num_heads=8),
            transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256)).eval()


def test_sam_matches_segment_anything(monkeypatch):
    modeling = reference_modeling(monkeypatch)
    ours = build_sam("tiny", img_size=SIZE, seed=3)
    with torch.no_grad():  # rel-pos tables and pos_embed start at zero: make them count
        for name, p in ours.named_parameters():
            if "rel_pos" in name or name.endswith("pos_embed"):
                p.normal_(0, 0.5)
    ref = reference_sam(modeling, CONFIGS["tiny"])
    ref.load_state_dict(ours.state_dict(), strict=True)

    image = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = ref.image_encoder(image)
    got = ours.embed(image)
    assert got.shape == want.shape == (1, 256, SIZE // 16, SIZE // 16)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)

    points = (torch.tensor([[[100.0, 60.0], [30.0, 200.0]]]), torch.tensor([[1, 0]]))
    for multimask in (True, False):
        masks, iou = ours.decode(want, points, multimask=multimask)
        with torch.no_grad():
            sparse, dense = ref.prompt_encoder(points=points, boxes=None, masks=None)
            ref_masks, ref_iou = ref.mask_decoder(
                image_embeddings=want, image_pe=ref.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                multimask_output=multimask)
        assert masks.shape == ref_masks.shape and iou.shape == ref_iou.shape
        assert torch.allclose(masks, ref_masks, atol=1e-4, rtol=1e-4)
        assert torch.allclose(iou, ref_iou, atol=1e-5, rtol=1e-4)
    # the comparison is not vacuous: other weights give other masks
    other = build_sam("tiny", img_size=SIZE, seed=4)
    assert not torch.allclose(other.decode(want, points, multimask=False)[0], ref_masks,
                              atol=1e-3)
