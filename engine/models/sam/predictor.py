"""SAM on one image window: encode once, decode each click in milliseconds.

Pre-processing follows the published model: the longest side is resized to 1024 (bilinear),
RGB 0..255 is normalised with SAM's pixel statistics and padded bottom/right to 1024².  Mask
logits (256²) are up-sampled to 1024², cropped to the resized image, up-sampled to the window
and thresholded at 0.  With several candidate masks the one with the highest predicted IoU wins.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from . import PIXEL_MEAN, PIXEL_STD, Sam


@dataclass
class Embedding:
    """A window's image embedding and the geometry to map prompts and masks."""

    features: torch.Tensor          # 1×256×64×64
    pe: torch.Tensor                # its positional encoding (kept: decoding needs it per click)
    size: Tuple[int, int]           # window (h, w)
    resized: Tuple[int, int]        # after resizing the longest side to the model size
    # what a decoder derives from the features once per window (engine.click.sam_onnx)
    prepared: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class MaskResult:
    mask: np.ndarray                # bool h×w in window pixels
    score: float                    # predicted IoU of the chosen mask
    scores: Sequence[float]         # of every candidate


def resized_shape(h: int, w: int, size: int) -> Tuple[int, int]:
    scale = size / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def encode(sam: Sam, rgb: np.ndarray, device: torch.device) -> Embedding:
    """3×h×w uint8 RGB → :class:`Embedding` (the image encoder's one pass)."""
    size = sam.img_size
    h, w = rgb.shape[1:]
    nh, nw = resized_shape(h, w, size)
    x = torch.from_numpy(np.ascontiguousarray(rgb)).to(device).float()[None]
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(PIXEL_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD, device=device).view(1, 3, 1, 1)
    x = F.pad((x - mean) / std, (0, size - nw, 0, size - nh))
    with torch.inference_mode():
        pe = sam.prompt_encoder.dense_pe()
    return Embedding(sam.embed(x), pe, (h, w), (nh, nw))


def decode(sam: Sam, emb: Embedding, points: Optional[np.ndarray] = None,
           labels: Optional[np.ndarray] = None, box: Optional[Sequence[float]] = None,
           multimask: bool = True, shape: Optional[Tuple[int, int]] = None) -> MaskResult:
    """Mask of the prompts (window pixel coordinates x, y; labels 1 object / 0 background; box
    x0, y0, x1, y1).  ``multimask``: three candidates, the best-scoring kept; ``shape``: the
    mask's (h, w), default the window's."""
    if points is None and box is None:
        raise ValueError("give at least one point or a box")
    (h, w), (nh, nw) = emb.size, emb.resized
    device = emb.features.device
    scale = torch.tensor([nw / w, nh / h], device=device)
    prompt = None
    if points is not None:
        coords = torch.as_tensor(np.asarray(points, np.float32), device=device)[None] * scale
        lab = torch.as_tensor(np.asarray(labels, np.int64), device=device)[None]
        prompt = (coords, lab)
    box_t = None
    if box is not None:
        box_t = (torch.as_tensor(np.asarray(box, np.float32), device=device).view(1, 2, 2)
                 * scale).view(1, 4)
    masks, iou = sam.decode(emb.features, prompt, box_t, multimask, emb.pe)
    return best_mask(masks, iou, emb, sam.img_size, shape)


def best_mask(masks: torch.Tensor, iou: torch.Tensor, emb: Embedding, size: int,
              shape: Optional[Tuple[int, int]] = None) -> MaskResult:
    """The candidate with the highest predicted IoU, its 256² logits up-sampled to the model
    frame, cropped to the resized window, up-sampled to the window and thresholded at 0.  A
    ``shape`` smaller than the window (a preview) skips the model frame: the logits are cropped
    and resized to it in one step."""
    (h, w), (nh, nw) = shape or emb.size, emb.resized
    best = int(iou[0].argmax())
    low = masks[:, best:best + 1].float()
    if (h, w) != tuple(emb.size):
        scale = low.shape[-1] / size
        up = low[..., :math.ceil(nh * scale), :math.ceil(nw * scale)]
    else:
        up = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)[
            ..., :nh, :nw]
    up = F.interpolate(up, size=(h, w), mode="bilinear", align_corners=False)
    return MaskResult((up[0, 0] > 0).cpu().numpy(), float(iou[0, best]),
                      [float(v) for v in iou[0]])
