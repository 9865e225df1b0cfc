"""Validation of a training run: the network on the validation windows (loss and confusion
matrix summed over all ranks) and the scores it is judged by (mIoU, or change-class F1)."""
from __future__ import annotations

from typing import Any, Callable, ContextManager, Dict, Iterable, List, Tuple

import numpy as np
import torch

from ..analysis.metrics import ConfusionMatrix, change_scores, scores
from ..compute.backend import logits_of
from .data import batch_to, network_inputs
from .distributed import all_sum
from .losses import IGNORE


def validate(net: torch.nn.Module, loader: Iterable[Dict[str, torch.Tensor]],
             loss_fn: Callable[..., torch.Tensor], device: torch.device, num_classes: int,
             world: int, autocast: Callable[[], ContextManager[Any]]) -> Tuple[float, np.ndarray]:
    """Mean loss and confusion matrix of ``net`` on the validation ``loader`` over all ranks."""
    net.eval()
    cm = ConfusionMatrix(num_classes, ignore_index=IGNORE)
    total = torch.zeros(2, dtype=torch.float64, device=device)
    with torch.inference_mode():
        for batch in loader:
            b = batch_to(batch, device)
            with autocast():
                out = net(**network_inputs(b))
            logits = logits_of(out).float()
            total[0] += float(loss_fn(logits, b["target"])) * len(logits)
            total[1] += len(logits)
            cm.update(b["target"], logits.argmax(1))
    matrix = torch.as_tensor(cm.matrix, dtype=torch.float64, device=device)
    all_sum(matrix, world)
    all_sum(total, world)
    return float(total[0] / total[1].clamp_min(1)), matrix.long().cpu().numpy()


def metric_of(task: str, matrix: np.ndarray, names: List[str]) -> Tuple[float, Dict[str, Any]]:
    """The run's metric (change: F1 of the change class, else mIoU; 0 when undefined) and all
    the scores of ``matrix``."""
    if task == "change":
        s = change_scores(matrix)
        return float(s["f1"] or 0.0), s
    s = scores(matrix, names)
    return float(s["miou"] or 0.0), s


def compact_scores(s: Dict[str, Any]) -> Dict[str, Any]:
    """Validation scores small enough for the history (per-class IoU by name)."""
    out = {k: v for k, v in s.items() if not isinstance(v, (list, dict))}
    if "per_class" in s:
        out["iou"] = {c["name"]: c["iou"] for c in s["per_class"]}
    return out
