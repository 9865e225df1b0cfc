"""A new model file from an architecture: a default card and random weights, or a published
pre-trained encoder with a random decoder (``python -m engine init-model``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from ..jobs import Job, ProgressFn, check_outputs, job_outputs
from .card import default_card
from .modelfile import save_model


@job_outputs
def init_model(arch: str, bands: int, classes: int, out: str | Path, seed: int = 0,
               backbone_weights: Optional[str | Path] = None,
               progress: Optional[ProgressFn] = None, **card_options: Any) -> Path:
    """Write a model file with random weights (or a published pre-trained encoder from
    ``backbone_weights`` and a random decoder) and a default card."""
    import torch

    from ..models import build
    from ..weights import inspect_backbone, load_backbone
    check_outputs({"--out": out}, [backbone_weights])
    info = inspect_backbone(arch, backbone_weights) if backbone_weights else None
    if info is not None:
        card_options["hparams"] = {**(card_options.get("hparams") or {}), **info.hparams}
    card = default_card(arch, bands, classes, **card_options)
    torch.manual_seed(seed)
    net = build(arch, **card["hparams"])
    if info is not None:
        report = load_backbone(net, arch, backbone_weights)
        Job(progress).log(report.line())
        _pretrained_normalisation(card, info.normalisation)
        card["training"]["status"] = "untrained decoder; pre-trained encoder"
        card["training"]["backbone"] = report.summary()
    return save_model(out, card, net)


def _pretrained_normalisation(card: Dict[str, Any], normalisation: Optional[str]) -> None:
    """8-bit imagery groups get the normalisation the backbone was trained with."""
    from ..io.weight_layouts import pretrained_statistics
    for name in ("image", "t1", "t2"):
        group = card["inputs"].get(name)
        if group and normalisation:
            group["mean"], group["std"], _ = pretrained_statistics(
                group["mean"], group["std"], group["dtype"], normalisation)
