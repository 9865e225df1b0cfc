"""Published pre-trained weights → the zoo's encoders, from local files only.

``inspect_backbone(arch, path)`` checks the file fits ``arch`` and gives what it implies before the
network is built: its layout, the input normalisation its weights were trained with and any
hyper-parameters (VSGNet: which DINOv2 ViT, and its path: the frozen encoder is rebuilt from the
file, never stored in the model file); ``load_backbone(net, arch, path)`` copies the tensors into the built
network and returns a :class:`LoadReport` (``report.line()`` is the one-line summary).  The file's
layout is recognised from its key names (:mod:`engine.io.weight_layouts`), its container from its
bytes (:mod:`engine.io.weight_files`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from torch import nn

from ..jobs import InputError, ModelFileError
from ..io.weight_layouts import KNOWN, NORMALISATION, NORMALISATIONS, detect, require
from ..io.weight_files import WeightFile, read_weights
from .report import LoadReport
from .targets import BY_PATH, PLANS, accepted
from .transfer import apply_plan


def _check_accepted(arch: str, layout: str, source: str) -> None:
    layouts = accepted().get(arch, ())
    if layout in layouts:
        return
    fits = "; ".join(f"{a}: {', '.join(KNOWN[x].split(' (')[0] for x in ls)}"
                     for a, ls in sorted(accepted().items()))
    if not layouts:
        raise InputError(f"architecture '{arch}' has no pre-trained encoder to initialise from "
                         f"{source}; backbone weights fit — {fits}. Train '{arch}' without "
                         f"--backbone-weights, or fine-tune a model file with --init")
    raise ModelFileError(f"{source} is a {KNOWN[layout]}, which does not fit '{arch}'; "
                         f"backbone weights fit — {fits}")


@dataclass
class BackboneInfo:
    """What a weight file implies for a network before it is built."""

    layout: str
    normalisation: Optional[str]                 # a key of NORMALISATIONS
    hparams: Dict[str, Any] = field(default_factory=dict)


def inspect_backbone(arch: str, path: str | Path) -> BackboneInfo:
    """Layout, normalisation and hyper-parameters of a weight file for ``arch``.  Raises a
    sentence for an unknown layout or one that does not fit ``arch``."""
    wf = read_weights(path)
    layout = require(wf.tensors, str(wf.path))
    _check_accepted(arch, layout, str(wf.path))
    info = BackboneInfo(layout, NORMALISATION.get(layout))
    if arch in BY_PATH and layout == "dinov2":
        from ..models.vit import guess_config
        config = guess_config(wf.tensors)
        if config is None:
            raise ModelFileError(f"{wf.path} has DINOv2 key names but not the shapes of a "
                                 f"published ViT-S/B/L/g-14; give the original checkpoint")
        info.hparams = {"vit": config, "vit_weights": str(wf.path.resolve())}
    elif arch in BY_PATH and layout == "sam":
        from ..models.sam.checkpoint import full_names, variant
        config = variant(full_names(wf.tensors), str(wf.path))
        info.hparams = {"vit": f"sam_{config.name}", "vit_weights": str(wf.path.resolve())}
    return info


def load_backbone(net: nn.Module, arch: str, path: str | Path) -> LoadReport:
    """Initialise ``net``'s encoder from a published checkpoint (in place) and report."""
    wf = read_weights(path)
    layout = require(wf.tensors, str(wf.path))
    _check_accepted(arch, layout, str(wf.path))
    if arch in BY_PATH:
        return _by_path_report(net, wf, layout)
    plan = PLANS[arch][layout](net, wf)
    return apply_plan(net, plan, str(wf.path))


def _by_path_report(net: nn.Module, wf: WeightFile, layout: str) -> LoadReport:
    """VSGNet: the frozen encoder was built from the file (strict check); report it."""
    vits = getattr(net, "frozen_vits", ())
    if not vits or vits[0].source is None or \
            Path(vits[0].source).resolve() != wf.path.resolve():
        raise InputError(f"build the network with inspect_backbone('{wf.path}').hparams first: its "
                         f"frozen encoder is rebuilt from the file by path")
    names = sorted(vits[0].vit.state_dict())
    return LoadReport(str(wf.path), layout, ["frozen ViT (rebuilt from this file on load)"],
                      matched=names, normalisation=NORMALISATION[layout],
                      hparams={"vit": vits[0].config.name})


__all__ = ["inspect_backbone", "BackboneInfo", "load_backbone", "read_weights", "detect", "LoadReport",
           "WeightFile", "KNOWN", "NORMALISATIONS", "accepted"]
