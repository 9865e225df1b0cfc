"""Model registry: ``build(name, **hparams)`` returns a fresh ``torch.nn.Module``.

Each architecture registers a builder and a short description.  Networks are called with the
card's input groups as keyword arguments (``image``, ``aux``, ``t1``, ``t2``; each B×bands×H×W)
and return B×classes×H×W logits, or in training mode optionally a dict
``{"logits": …, "aux_logits": [...]}`` for deep supervision.  Networks that need labels during
training take ``targets=`` (never passed at inference).  ``input_multiple`` is the edge length the
input must be a multiple of.  ``encoder`` lists the parameter-name prefixes of the network's
encoder (the part pre-trained weights or a fine-tuned model bring): training gives it a lower
learning rate and can freeze it for the first epochs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import torch

from ..jobs import InputError


@dataclass(frozen=True)
class Architecture:
    """A registered network: how to build it and what it expects."""

    name: str
    task: str
    builder: Callable[..., torch.nn.Module]
    description: str
    input_multiple: int
    encoder: Tuple[str, ...] = ()


_REGISTRY: Dict[str, Architecture] = {}


def register(name: str, task: str, description: str, input_multiple: int,
             encoder: Tuple[str, ...] = ()):
    """Decorator registering a network builder under ``name``."""
    def wrap(builder: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
        _REGISTRY[name] = Architecture(name, task, builder, description, input_multiple,
                                       tuple(encoder))
        return builder
    return wrap


def architecture(name: str) -> Architecture:
    """Return the registered architecture ``name`` or raise a clear error."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown architecture '{name}'; available: "
                         f"{', '.join(sorted(_REGISTRY))}") from None


def build(name: str, **hparams) -> torch.nn.Module:
    """Build a fresh network of architecture ``name`` with the given hyper-parameters."""
    return architecture(name).builder(**hparams)


def available(task: str | None = None) -> List[str]:
    """Names of the registered architectures (optionally only those for ``task``)."""
    return sorted(n for n, a in _REGISTRY.items() if task is None or a.task == task)


from . import (cafe, fcsiam, glcnet, mindist, sgsln, srcbtfusion, unet,  # noqa: E402,F401
               vsgnet)  # (importing registers the built-in networks)
