"""Model cards: building a sensible default card and creating untrained model files.

torch (through the model registry) is imported only to build networks, so class helpers serve
ONNX cards without torch.
"""
from __future__ import annotations

import colorsys
import datetime as _dt
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from . import __version__
from .catalog import NEEDS_AUX
from .jobs import InputError, Job, ProgressFn

DEFAULT_BAND_NAMES = {1: ["gray"], 3: ["R", "G", "B"], 4: ["R", "G", "B", "NIR"]}
ISPRS_CLASSES = ["impervious", "building", "low vegetation", "tree", "car", "clutter"]
CHANGE_CLASSES = [{"value": 0, "name": "no change", "color": [0, 0, 0]},
                  {"value": 1, "name": "change", "color": [255, 0, 0]}]
ISPRS_COLOURS = [(255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0),
                 (255, 0, 0)]


def class_colour(index: int) -> List[int]:
    """A stable, well-separated colour for class ``index`` (golden-ratio hue steps)."""
    h = (index * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.75, 0.95)
    return [round(r * 255), round(g * 255), round(b * 255)]


def make_classes(names: Sequence[str], values: Optional[Sequence[int]] = None) -> List[Dict[str, Any]]:
    """Card class entries for ``names`` (values default to 1..n; ISPRS names get ISPRS colours)."""
    vals = list(values) if values is not None else list(range(1, len(names) + 1))
    out = []
    for i, (v, n) in enumerate(zip(vals, names)):
        colour = (list(ISPRS_COLOURS[ISPRS_CLASSES.index(n)]) if n in ISPRS_CLASSES
                  else class_colour(i))
        out.append({"value": int(v), "name": str(n), "color": colour})
    return out


def default_card(arch: str, bands: int, classes: int, *, band_names: Optional[Sequence[str]] = None,
                 class_names: Optional[Sequence[str]] = None, dtype: str = "uint8",
                 tile_size: int = 512, overlap: int = 64, gsd_m: Optional[float] = None,
                 hparams: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """A complete card for an untrained model (segmentation or change) with ``bands`` inputs."""
    if bands < 1 or classes < 2:
        raise InputError(f"a model needs at least 1 band and 2 classes (got {bands}, {classes})")
    from .models import architecture
    a = architecture(arch)
    names = list(band_names or DEFAULT_BAND_NAMES.get(bands, [f"B{i}" for i in range(1, bands + 1)]))
    if len(names) != bands:
        raise InputError(f"{len(names)} band names given for {bands} bands")
    cnames = list(class_names or (ISPRS_CLASSES if classes == 6 else
                                  [f"class {i}" for i in range(1, classes + 1)]))
    scale = {"uint8": 255.0, "uint16": 65535.0}.get(dtype, 1.0)
    hp = {"in_channels": bands, "num_classes": classes, **(hparams or {})}
    group = {"bands": [{"index": i + 1, "name": n} for i, n in enumerate(names)],
             "dtype": dtype, "mean": [scale / 2] * bands, "std": [scale / 4] * bands,
             "nodata": None}
    if a.task == "change":
        if classes != 2:
            raise InputError("a change model has 2 classes (no change, change)")
        inputs = {"t1": group, "t2": dict(group)}
        class_entries = [dict(c) for c in CHANGE_CLASSES]
    else:
        inputs = {"image": group}
        class_entries = make_classes(cnames)
        if arch in NEEDS_AUX:
            n_aux = int(hp.setdefault("aux_channels", 1))
            inputs["aux"] = {"bands": [{"index": i + 1, "name": "DSM" if n_aux == 1 else f"aux{i + 1}"}
                                       for i in range(n_aux)],
                             "dtype": "float32", "mean": [0.0] * n_aux, "std": [1.0] * n_aux,
                             "nodata": None}
    return {
        "name": f"{arch} ({bands} bands, {classes} classes)",
        "task": a.task,
        "architecture": arch,
        "hparams": hp,
        "inputs": inputs,
        "classes": class_entries,
        "tile_size": tile_size, "overlap": overlap, "gsd_m": gsd_m,
        "training": {"status": "untrained (random weights)",
                     "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                     "engine_version": __version__},
    }


def init_model(arch: str, bands: int, classes: int, out: str | Path, seed: int = 0,
               backbone_weights: Optional[str | Path] = None,
               progress: Optional[ProgressFn] = None, **card_options: Any) -> Path:
    """Write a model file with random weights (or a published pre-trained encoder from
    ``backbone_weights`` and a random decoder) and a default card."""
    import torch

    from .models import build
    from .modelfile import save_model
    from .weights import inspect_backbone, load_backbone
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
    from .training.encoder import pretrained_statistics
    for name in ("image", "t1", "t2"):
        group = card["inputs"].get(name)
        if group and normalisation:
            group["mean"], group["std"], _ = pretrained_statistics(
                group["mean"], group["std"], group["dtype"], normalisation)
