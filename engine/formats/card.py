"""The model card: what a model is, apart from its weights and its file.

Schema constants, the :class:`LoadedModel` every face receives, card validation and the default
card of a new model.  No torch and no file access here, so ONNX import, the model-file reader and
the writer all stand on this module without standing on each other.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

from .. import __version__
from ..io.classes import CHANGE_CLASSES, ISPRS_CLASSES, SHAPES, default_shape, make_classes
from ..io.rasters import CLASS_NODATA
from ..jobs import InputError, ModelFileError
from .catalog import NEEDS_AUX

DEFAULT_BAND_NAMES = {1: ["gray"], 3: ["R", "G", "B"], 4: ["R", "G", "B", "NIR"]}
SCHEMA_VERSION = 1
FORMAT_TAG = "rs_seg.model"
TASKS = ("segmentation", "change", "pretrained")
# A "pretrained" file is a self-supervised backbone: no classes; it only serves `train --init`.
INPUT_GROUPS = {"segmentation": ("image",), "change": ("t1", "t2"), "pretrained": ("image",)}
ONNX_SUFFIX = ".onnx"


def is_onnx(path: str | Path) -> bool:
    """True for an ONNX model file name (loaded by :mod:`engine.formats.onnx`)."""
    return Path(path).suffix.lower() == ONNX_SUFFIX


@dataclass
class LoadedModel:
    """A model ready for inference: its card (a plain dict) and its network (eval mode): a
    ``torch.nn.Module``, or an :class:`engine.formats.onnx.model.OnnxNetwork` for ONNX files."""

    card: Dict[str, Any]
    network: Any
    path: Optional[Path] = None

    @property
    def task(self) -> str:
        return self.card["task"]

    @property
    def band_names(self) -> list:
        """Band names of the main input (``image``, or ``t1`` for change models)."""
        main = INPUT_GROUPS[self.card["task"]][0]
        return [b["name"] for b in self.card["inputs"][main]["bands"]]


def default_card(arch: str, bands: int, classes: int, *, band_names: Optional[Sequence[str]] = None,
                 class_names: Optional[Sequence[str]] = None, dtype: str = "uint8",
                 tile_size: int = 512, overlap: int = 64, gsd_m: Optional[float] = None,
                 hparams: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """A complete card for an untrained model (segmentation or change) with ``bands`` inputs."""
    if bands < 1 or classes < 2:
        raise InputError(f"a model needs at least 1 band and 2 classes (got {bands}, {classes})")
    from ..models import architecture
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
        class_entries = [{**c, "shape": default_shape(c["name"])} for c in make_classes(cnames)]
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


def validate_card(card: Mapping[str, Any], source: str = "model card") -> None:
    """Raise :class:`ModelFileError` when the card lacks what inference needs."""
    def bad(what: str) -> ModelFileError:
        return ModelFileError(f"{source}: {what}; the file is corrupt or incomplete")

    if card.get("task") not in TASKS:
        raise bad(f"task must be one of {TASKS}, not {card.get('task')!r}")
    if not isinstance(card.get("architecture"), str):
        raise bad("no architecture")
    groups = card.get("inputs") or {}
    required = INPUT_GROUPS[card["task"]]
    if not all(g in groups for g in required):
        raise bad(f"a {card['task']} model needs input groups {', '.join(required)}")
    for name, group in groups.items():
        if not group.get("bands"):
            raise bad(f"no bands in input group '{name}'")
        n = len(group["bands"])
        for key in ("mean", "std"):
            if len(group.get(key, [])) != n:
                raise bad(f"inputs.{name}.{key} must have one value per band ({n})")
        if any(float(s) <= 0 for s in group["std"]):
            raise bad(f"inputs.{name}.std must be positive")
    classes = card.get("classes") or []
    if not classes and card["task"] != "pretrained":
        raise bad("no classes")
    values = [c["value"] for c in classes]
    if len(set(values)) != len(values) or not all(0 <= v < CLASS_NODATA for v in values):
        raise bad(f"class values must be distinct integers in 0..{CLASS_NODATA - 1}")
    shapes = [c["shape"] for c in classes if "shape" in c]
    if any(s not in SHAPES for s in shapes):
        raise bad(f"a class shape must be one of {', '.join(SHAPES)} (vectorize outlines)")
    for key in ("tile_size", "overlap"):
        if not isinstance(card.get(key), int):
            raise bad(f"no {key}")
