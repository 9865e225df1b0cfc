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
from ..weights.layouts import NORMALISATIONS

#: Normalisation stored in the card when the backbone asks for it and the data are 8-bit.
_SCALE = {"uint8": 255.0}


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


def pretrained_statistics(mean: List[float], std: List[float], dtype: str,
                          normalisation: str) -> tuple[List[float], List[float], bool]:
    """Band mean/std (raster units) for a backbone trained with ``normalisation`` on 0..1 RGB:
    the first three bands take its values, others keep the data statistics.  Only 8-bit data
    have a known 0..1 scale; other types keep the data statistics (``False`` returned)."""
    scale = _SCALE.get(dtype)
    if scale is None or normalisation not in NORMALISATIONS:
        return mean, std, False
    m, s = NORMALISATIONS[normalisation]
    if len(mean) < 3:                        # grey: the mean of the RGB statistics
        m, s = (sum(m) / 3,) * len(mean), (sum(s) / 3,) * len(mean)
    new_mean = [scale * v for v in m[:len(mean)]] + list(mean[3:])
    new_std = [scale * v for v in s[:len(std)]] + list(std[3:])
    return new_mean, new_std, True


__all__ = ["split_groups", "hold_statistics", "pretrained_statistics", "is_encoder"]
