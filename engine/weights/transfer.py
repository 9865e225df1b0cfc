"""Copy mapped checkpoint tensors into a network, adapting the first convolution, and report."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from ..jobs import ModelFileError
from .adapt import adapt_first_conv, describe
from ..io.weight_layouts import KNOWN, NORMALISATION
from .report import LoadReport

#: A tensor with our name → (its name in the file, the tensor in our layout).
Pairs = Dict[str, Tuple[str, torch.Tensor]]
#: Resizes a file tensor to the shape of ours (e.g. a position table); None when it cannot.
Resizer = Callable[[torch.Tensor, torch.Tensor], Optional[torch.Tensor]]

#: Below this share of the target parts' tensors matched, the file is for another network.
MIN_MATCHED = 0.5


@dataclass
class Plan:
    """Where a checkpoint's tensors go in one network."""

    layout: str
    parts: List[str]                           # our name prefixes the file initialises
    pairs: Pairs
    unused: List[str] = field(default_factory=list)          # file keys with no counterpart
    first_convs: Dict[str, str] = field(default_factory=dict)  # our name → adapt mode
    resizers: Dict[str, Resizer] = field(default_factory=dict)


def _fit(name: str, tensor: torch.Tensor, like: torch.Tensor, plan: Plan,
         adapted: Dict[str, str]) -> Optional[torch.Tensor]:
    """``tensor`` in ``like``'s shape, or None when it does not fit."""
    mode = plan.first_convs.get(name)
    if mode is not None and tensor.ndim == 4 and like.ndim == 4 and \
            tensor.shape[0] == like.shape[0] and tensor.shape[2:] == like.shape[2:]:
        if mode == "mean" or tensor.shape[1] != like.shape[1]:
            adapted[name] = describe(tensor.shape[1], like.shape[1], mode)
            return adapt_first_conv(tensor.float(), like.shape[1], mode)
    if tuple(tensor.shape) == tuple(like.shape):
        return tensor
    resize = plan.resizers.get(name)
    return resize(tensor, like) if resize is not None else None


def apply_plan(net: nn.Module, plan: Plan, source: str) -> LoadReport:
    """Copy ``plan``'s tensors into ``net`` (in place) and report; refuse a file whose tensors
    cover too little of the target parts (a checkpoint for another architecture)."""
    own = net.state_dict()
    target = [k for k in own if any(k.startswith(p) for p in plan.parts)]
    report = LoadReport(source, plan.layout, list(plan.parts),
                        normalisation=NORMALISATION.get(plan.layout))
    report.unexpected = list(plan.unused)
    fitted: Dict[str, torch.Tensor] = {}
    for name, (key, tensor) in plan.pairs.items():
        value = _fit(name, tensor, own[name], plan, report.adapted) if name in own else None
        if value is None:
            report.unexpected.append(key)
            report.adapted.pop(name, None)
        else:
            fitted[name] = value
    share = len(fitted) / max(1, len(target))
    if share < MIN_MATCHED:
        raise ModelFileError(
            f"{source} looks like a {KNOWN[plan.layout]} but only {len(fitted)} of the "
            f"{len(target)} tensors of {', '.join(plan.parts)} match it by name and shape: it is "
            f"a checkpoint for another architecture or size; give the published file for this "
            f"model (e.g. ResNet-50 for cafe/glcnet)")
    with torch.no_grad():
        for name, value in fitted.items():
            own[name].copy_(value.to(own[name].dtype))
    report.matched = sorted(fitted)
    report.missing = [k for k in target if k not in fitted]
    return report
