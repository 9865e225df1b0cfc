"""The split, re-associated SAM decoder computes what segment-anything's prompt encoder + mask
decoder compute: all four masks' logits and IoUs, for points, background points and boxes, at a
small model frame and at the published checkpoints' (1024², a 64² embedding)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.models.sam import build_sam
from engine.models.sam.prepared_decoder import PreparedDecoder, unblock
from tests.engine.models.test_sam_reference import reference_modeling

PROMPTS = [
    {"points": [[50.0, 70.0]], "labels": [1]},
    {"points": [[50.0, 70.0], [180.0, 20.0]], "labels": [1, 0]},
    {"box": [10.0, 20.0, 90.0, 150.0]},
    {"points": [[40.0, 60.0]], "labels": [1], "box": [10.0, 20.0, 90.0, 150.0]},
]


def reference_parts(modeling, size: int):
    """segment-anything's prompt encoder and mask decoder for a ``size``² model frame."""
    grid = size // 16
    prompt = modeling.PromptEncoder(embed_dim=256, image_embedding_size=(grid, grid),
                                    input_image_size=(size, size), mask_in_chans=16)
    decoder = modeling.MaskDecoder(
        num_multimask_outputs=3,
        transformer=modeling.TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048,
                                               num_heads=8),
        transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256)
    return prompt.eval(), decoder.eval()


def unified(prompt: dict, scale: float):
    """The graph's prompt arrays (points, then a padding point or the box corners)."""
    coords = [np.array(prompt.get("points", np.zeros((0, 2))), np.float32).reshape(-1, 2)]
    labels = [np.array(prompt.get("labels", []), np.float32)]
    if "box" in prompt:
        coords.append(np.array(prompt["box"], np.float32).reshape(2, 2))
        labels.append(np.array([2.0, 3.0], np.float32))
    else:
        coords.append(np.zeros((1, 2), np.float32))
        labels.append(np.array([-1.0], np.float32))
    return (torch.from_numpy(np.concatenate(coords)[None] * scale),
            torch.from_numpy(np.concatenate(labels)[None]))


@pytest.mark.parametrize("size", [256, 1024])
def test_the_prepared_decoder_is_segment_anythings(monkeypatch, size):
    modeling = reference_modeling(monkeypatch)
    sam = build_sam("tiny", img_size=size, seed=5)
    ref_prompt, ref_decoder = reference_parts(modeling, size)
    ref_prompt.load_state_dict(sam.prompt_encoder.state_dict(), strict=True)
    ref_decoder.load_state_dict(sam.mask_decoder.state_dict(), strict=True)
    grid = size // 16
    image = torch.randn(1, 256, grid, grid, generator=torch.Generator().manual_seed(2))
    module = PreparedDecoder(sam).eval()
    window = module.prepare(image)
    scale = size / 256
    for prompt in PROMPTS:
        points = None
        if "points" in prompt:
            points = (torch.tensor(prompt["points"]) [None] * scale,
                      torch.tensor(prompt["labels"])[None])
        box = torch.tensor(prompt["box"])[None] * scale if "box" in prompt else None
        with torch.no_grad():
            sparse, dense = ref_prompt(points=points, boxes=box, masks=None)
            want_masks, want_iou = ref_decoder.predict_masks(image, ref_prompt.get_dense_pe(),
                                                             sparse, dense)
            blocks, iou = module(*window, *unified(prompt, scale))
        masks = np.stack([unblock(blocks[k].numpy(), grid) for k in range(4)])
        assert masks.shape == tuple(want_masks.shape[1:]) == (4, 4 * grid, 4 * grid)
        assert np.abs(masks - want_masks[0].numpy()).max() <= 1e-4
        assert torch.allclose(iou, want_iou, atol=1e-5)
    # not vacuous: another prompt gives other masks
    other, _ = module(*window, *unified({"points": [[200.0, 200.0]], "labels": [1]}, scale))
    assert not torch.allclose(other, blocks, atol=1e-3)


def test_unblock_puts_each_tokens_pixels_in_place():
    grid = 3
    rows, cols = np.meshgrid(np.arange(4 * grid), np.arange(4 * grid), indexing="ij")
    # block order: token row, token column, first 2×2 (row, col), second 2×2 (row, col)
    tr, a1, a2 = rows // 4, (rows // 2) % 2, rows % 2
    tc, b1, b2 = cols // 4, (cols // 2) % 2, cols % 2
    index = ((((tr * grid + tc) * 2 + a1) * 2 + b1) * 2 + a2) * 2 + b2
    blocks = np.zeros(16 * grid * grid)
    blocks[index.ravel()] = (rows * 100 + cols).ravel()
    assert (unblock(blocks, grid) == rows * 100 + cols).all()
