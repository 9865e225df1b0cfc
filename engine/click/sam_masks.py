"""Segment Anything "automatic" masks of one image: a regular grid of point prompts, each
decoded into three candidate masks, filtered and de-duplicated as in the SAM paper's
automatic mask generation (§7.1 / appendix B): keep masks whose predicted IoU ≥ 0.88 and whose
stability score (IoU of the mask thresholded at logit −1 and at +1) ≥ 0.95, then greedy
non-maximum suppression on mask boxes at IoU 0.7.  One crop level only (no multi-crop zoom-in),
no torchvision: the suppression is written here.  The output is the list of
``{"segmentation": bool mask, "area": pixels}`` that ``engine.analysis.derive`` paints.
"""
from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import torch
import torch.nn.functional as F

from ..models.sam import Sam
from ..models.sam.predictor import Embedding, encode


def stability_scores(logits: torch.Tensor, offset: float = 1.0) -> torch.Tensor:
    """IoU between each mask thresholded at −``offset`` and at +``offset`` (N×H×W → N)."""
    inner = (logits > offset).flatten(1).sum(1).float()
    outer = (logits > -offset).flatten(1).sum(1).float()
    return inner / outer.clamp_min(1)


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """N×H×W bool → N×4 (x0, y0, x1, y1) inclusive pixel boxes (zeros for empty masks)."""
    n, h, w = masks.shape
    rows, cols = masks.any(2), masks.any(1)
    ar_h = torch.arange(h, device=masks.device)
    ar_w = torch.arange(w, device=masks.device)
    y0 = torch.where(rows, ar_h, h).min(1).values
    y1 = torch.where(rows, ar_h, -1).max(1).values
    x0 = torch.where(cols, ar_w, w).min(1).values
    x1 = torch.where(cols, ar_w, -1).max(1).values
    boxes = torch.stack([x0, y0, x1, y1], 1)
    return torch.where(masks.flatten(1).any(1)[:, None], boxes, torch.zeros_like(boxes))


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float = 0.7) -> List[int]:
    """Greedy non-maximum suppression: indices kept, best score first."""
    order = scores.argsort(descending=True).tolist()
    b = boxes.float()
    area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    keep: List[int] = []
    for i in order:
        if keep:
            k = torch.tensor(keep)
            lt = torch.maximum(b[k, :2], b[i, :2])
            rb = torch.minimum(b[k, 2:], b[i, 2:])
            inter = (rb - lt + 1).clamp_min(0).prod(1)
            if (inter / (area[k] + area[i] - inter)).max() > iou:
                continue
        keep.append(i)
    return keep


class MaskGenerator:
    """Automatic masks with a loaded :class:`Sam` (``generate(rgb)`` as segment-anything's)."""

    def __init__(self, sam: Sam, device: torch.device, points_per_side: int = 32,
                 pred_iou_thresh: float = 0.88, stability_thresh: float = 0.95,
                 box_nms_thresh: float = 0.7, batch: int = 16) -> None:
        self.sam, self.device = sam, device
        self.n, self.batch = int(points_per_side), int(batch)
        self.pred_iou, self.stability, self.nms = pred_iou_thresh, stability_thresh, box_nms_thresh

    def generate(self, rgb: np.ndarray) -> List[Dict[str, Any]]:
        """H×W×3 uint8 → masks (bool H×W) with their pixel areas."""
        emb = encode(self.sam, rgb.transpose(2, 0, 1), self.device)
        (h, w), (nh, nw) = emb.size, emb.resized
        grid = (np.arange(self.n) + 0.5) / self.n
        xs, ys = np.meshgrid(grid * w, grid * h)
        points = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)
        kept_masks, kept_scores = [], []
        for i in range(0, len(points), self.batch):
            logits, scores = self._decode(emb, points[i:i + self.batch])
            good = (scores >= self.pred_iou) & (stability_scores(logits) >= self.stability)
            kept_masks.append((logits[good] > 0))
            kept_scores.append(scores[good])
        masks = torch.cat(kept_masks) if kept_masks else torch.zeros(0, h, w, dtype=torch.bool)
        scores = torch.cat(kept_scores) if kept_scores else torch.zeros(0)
        nonempty = masks.flatten(1).any(1)
        masks, scores = masks[nonempty], scores[nonempty]
        keep = nms(mask_boxes(masks), scores, self.nms) if len(masks) else []
        return [{"segmentation": masks[k].cpu().numpy(), "area": int(masks[k].sum())}
                for k in keep]

    def _decode(self, emb: Embedding, points: np.ndarray):
        """Window-sized mask logits (B·3×h×w) and IoU scores (B·3) of single-point prompts."""
        (h, w), (nh, nw) = emb.size, emb.resized
        scale = torch.tensor([nw / w, nh / h], device=self.device)
        coords = torch.as_tensor(points, device=self.device)[:, None] * scale
        labels = torch.ones(len(points), 1, dtype=torch.int64, device=self.device)
        low, iou = self.sam.decode(emb.features, (coords, labels), None, True, emb.pe)
        size = self.sam.img_size
        up = F.interpolate(low.flatten(0, 1)[:, None], size=(size, size), mode="bilinear",
                           align_corners=False)
        up = F.interpolate(up[..., :nh, :nw], size=(h, w), mode="bilinear", align_corners=False)
        return up[:, 0], iou.flatten()
