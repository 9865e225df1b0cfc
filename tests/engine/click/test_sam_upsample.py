"""SAM's mask post-processing through onnxruntime gives the torch path's masks: up-sampled to the
model frame, cropped to the resized window, resized to the window; a preview in one step."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.click.sam_upsample import MaskUpsampler
from engine.models.sam.predictor import Embedding, best_mask, resized_shape


@pytest.mark.parametrize("window", [(256, 256), (200, 160), (90, 230)])
@pytest.mark.parametrize("preview", [1, 4])
def test_the_onnxruntime_mask_is_the_torch_mask(window, preview):
    frame = 256
    logits = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(sum(window)))
    emb = Embedding(torch.zeros(1), torch.zeros(1), window, resized_shape(*window, frame))
    shape = (-(-window[0] // preview), -(-window[1] // preview)) if preview > 1 else None
    want = best_mask(logits, torch.zeros(1, 1), emb, frame, shape).mask
    got = MaskUpsampler(1).mask(logits[0, 0].numpy(), frame, emb.resized, emb.size, shape)
    assert got.dtype == bool and got.shape == want.shape == (shape or window)
    assert np.mean(got == want) >= 0.9999
    assert 0.2 < got.mean() < 0.8  # random logits: a mixed mask, not a trivial one
