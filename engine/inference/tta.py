"""Test-time augmentation: a window's probabilities averaged over flips or the 8 symmetries of
the square (dihedral group D4).

Each window is seen by the network under every transform, its probabilities are turned back
and averaged before the one stitcher blends them, so the output grid, the blending and the
memory stay those of a plain run; the cost is one network pass per transform (``flips``: 4,
``d4``: 8).  Works on torch tensors and on numpy arrays (ONNX models without torch) alike, for
every input group of a window (both dates of a change pair turn together).
"""
from __future__ import annotations

import argparse
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from ..jobs import InputError

TTA_MODES = ("none", "flips", "d4")
Forward = Callable[[Dict[str, Any]], Any]
Transform = Tuple[int, bool]  # quarter turns, then a left-right flip


def check_tta(mode: str) -> str:
    """``mode`` when it is one of :data:`TTA_MODES`; else an :class:`InputError` naming them."""
    if mode not in TTA_MODES:
        raise InputError(f"unknown test-time augmentation '{mode}'; use one of "
                         f"{', '.join(TTA_MODES)}")
    return mode


def transforms(mode: str) -> List[Transform]:
    """The transforms of ``mode``: identity only, the flips (left-right, up-down, both) or D4."""
    if check_tta(mode) == "none":
        return [(0, False)]
    if mode == "flips":  # up-down is a half turn and a left-right flip; both flips a half turn
        return [(0, False), (0, True), (2, True), (2, False)]
    return [(k, flip) for k in range(4) for flip in (False, True)]


def _apply(a: Any, k: int, flip: bool) -> Any:
    """Rotate the last two axes of ``a`` by ``k`` quarter turns, then flip left-right."""
    if isinstance(a, np.ndarray):
        a = np.rot90(a, k, axes=(-2, -1)) if k else a
        return np.ascontiguousarray(a[..., ::-1] if flip else a)
    import torch
    a = torch.rot90(a, k, dims=(-2, -1)) if k else a
    return torch.flip(a, dims=(-1,)) if flip else a


def _invert(a: Any, k: int, flip: bool) -> Any:
    """Undo :func:`_apply` (flip back first, then turn back)."""
    return _apply(_apply(a, 0, flip), (4 - k) % 4, False)


def with_tta(forward: Forward, mode: str = "none") -> Forward:
    """``forward`` (named B×C×T×T inputs → B×K×T×T probabilities) averaged over the transforms
    of ``mode``; ``none`` returns ``forward`` itself."""
    todo = transforms(mode)
    if len(todo) == 1:
        return forward

    def averaged(inputs: Dict[str, Any]) -> Any:
        total = None
        for k, flip in todo:
            scores = forward({name: _apply(t, k, flip) for name, t in inputs.items()})
            back = _invert(scores, k, flip)
            total = back if total is None else total + back
        return total / len(todo)
    return averaged


def add_tta_argument(p: argparse.ArgumentParser) -> None:
    """``--tta none|flips|d4``."""
    p.add_argument("--tta", choices=TTA_MODES, default="none",
                   help="test-time augmentation: average the probabilities over flips (4 passes) "
                        "or the 8 flips and quarter turns (d4); default none")
