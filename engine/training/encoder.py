"""The pre-trained part of a network during training: lower learning rate, optional freeze.

"Encoder" is defined per architecture by the registry (``Architecture.encoder``: parameter-name
prefixes), so the same recipe serves ``--backbone-weights`` (published ImageNet/DINOv2 weights)
and ``--init`` (fine-tuning another model file) for every architecture, the zoo and the
baselines alike.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Sequence

from torch import nn

from ..jobs import InputError

def is_encoder(name: str, prefixes: Sequence[str]) -> bool:
    return any(name.startswith(p) for p in prefixes)


def split_groups(net: nn.Module, groups: Iterable[Dict[str, Any]], prefixes: Sequence[str],
                 lr: float, scale: float) -> List[Dict[str, Any]]:
    """Each optimiser group split into its encoder and other parameters; encoder groups get
    ``lr × scale`` and the mark ``encoder=True`` (the schedule can hold them at 0)."""
    if scale < 0:
        raise InputError(f"--encoder-lr-scale must be ≥ 0 (got {scale}); 0.1 is usual")
    names = {id(p): n for n, p in net.named_parameters()}
    out: List[Dict[str, Any]] = []
    for group in groups:
        params = list(group["params"])
        options = {k: v for k, v in group.items() if k != "params"}
        enc = [p for p in params if is_encoder(names.get(id(p), ""), prefixes)]
        rest = [p for p in params if not is_encoder(names.get(id(p), ""), prefixes)]
        if rest:
            out.append({**options, "params": rest, "lr": options.get("lr", lr)})
        if enc:
            out.append({**options, "params": enc, "lr": options.get("lr", lr) * scale,
                        "encoder": True})
    return out


def hold_statistics(net: nn.Module, prefixes: Sequence[str]) -> int:
    """Put the encoder's normalisation layers in eval mode (a frozen encoder keeps its
    pre-trained BatchNorm statistics); returns how many were switched."""
    n = 0
    for name, module in net.named_modules():
        if is_encoder(name + ".", prefixes) and isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            n += 1
    return n


__all__ = ["split_groups", "hold_statistics", "is_encoder"]
