"""Model files: one ``.rsmodel`` file holding a model card and the network weights.

The file is a safetensors container: the weights are plain tensors and the card is a JSON string
in the header metadata.  Loading parses a JSON header and copies raw tensor bytes; nothing in the
file is ever executed (no pickle), so a crafted file cannot run code.

``.onnx`` files load through :mod:`engine.onnx` (onnxruntime; no torch needed), so every
``load_model``/``read_card`` caller accepts them.  torch is imported only for ``.rsmodel`` files.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from . import __version__
from .io.rasters import CLASS_NODATA
from .jobs import InputError, ModelFileError, atomic_output

SCHEMA_VERSION = 1
FORMAT_TAG = "rs_seg.model"
TASKS = ("segmentation", "change", "pretrained")
# A "pretrained" file is a self-supervised backbone: no classes; it only serves `train --init`.
INPUT_GROUPS = {"segmentation": ("image",), "change": ("t1", "t2"), "pretrained": ("image",)}
ONNX_SUFFIX = ".onnx"


def is_onnx(path: str | Path) -> bool:
    """True for an ONNX model file name (loaded by :mod:`engine.onnx`)."""
    return Path(path).suffix.lower() == ONNX_SUFFIX


@dataclass
class LoadedModel:
    """A model ready for inference: its card (a plain dict) and its network (eval mode): a
    ``torch.nn.Module``, or an :class:`engine.onnx.model.OnnxNetwork` for ONNX files."""

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


def save_model(path: str | Path, card: Mapping[str, Any], network: Any) -> Path:
    """Write ``card`` and the weights of ``network`` (a torch module) to ``path`` atomically."""
    from safetensors.torch import save as st_save
    full = dict(card)
    full["schema_version"] = SCHEMA_VERSION
    full.setdefault("engine_version", __version__)
    validate_card(full)
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    payload = st_save(state, metadata={"format": FORMAT_TAG, "card": json.dumps(full)})
    with atomic_output(path) as tmp:
        tmp.write_bytes(payload)
    return Path(path)


def read_card(path: str | Path) -> Dict[str, Any]:
    """Return the card of a model file without building its network.

    Reads only the file's header (the weights stay on disk), so listing large models is instant.
    An ONNX file's card comes from its metadata and graph (:func:`engine.onnx.model.load_onnx`).
    """
    if is_onnx(path):
        from .onnx.model import load_onnx
        return load_onnx(path, "cpu").card
    from safetensors import SafetensorError, safe_open
    p = _existing(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        with p.open("rb") as fh:
            raise _unreadable(p, exc, fh.read(2)) from None
    return _card(p, meta)


def load_model(path: str | Path, device: Any = "cpu") -> LoadedModel:
    """Load a model file: validate its card, rebuild the network, load the weights (strictly).

    ``.onnx`` files become an :class:`engine.onnx.model.OnnxModel` on ``device``.
    """
    if is_onnx(path):
        from .onnx.model import load_onnx
        return load_onnx(path, device)
    from .models import build
    card, state = _parse(path)
    mismatch = (f"{path}: the weights do not match architecture '{card['architecture']}' "
                f"{{}}; the file is damaged or was written by an incompatible engine")
    try:
        network = build(card["architecture"], **card.get("hparams", {}))
        missing, unexpected = network.load_state_dict(state, strict=False)
    except (TypeError, RuntimeError) as exc:
        raise ModelFileError(mismatch.format(f"({str(exc).splitlines()[0]})")) from None
    if missing or unexpected:
        raise ModelFileError(mismatch.format(
            f"(missing {len(missing)}, unexpected {len(unexpected)} tensors)"))
    network.eval().to(device)
    return LoadedModel(card=card, network=network, path=Path(path))


def _parse(path: str | Path) -> tuple[Dict[str, Any], Dict[str, Any]]:
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load
    p = _existing(path)
    data = p.read_bytes()
    try:
        state = st_load(data)
        size = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + size].decode("utf-8")).get("__metadata__") or {}
    except (SafetensorError, ValueError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _unreadable(p, exc, data[:2]) from None
    return _card(p, meta), state


def _existing(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"model file {p} does not exist; check the path")
    return p


def _unreadable(p: Path, exc: Exception, head: bytes) -> ModelFileError:
    hint = (" It looks like a Python pickle (e.g. a raw torch.save file); those are never "
            "loaded because they can run code." if head[:1] == b"\x80" or head[:2] == b"PK"
            else "")
    return ModelFileError(f"{p} is not a readable RS Seg model file ({exc}).{hint} "
                          f"Re-export it with 'python -m engine' or pick another file")


def _card(p: Path, meta: Mapping[str, str]) -> Dict[str, Any]:
    """The validated card from a model file's header metadata."""
    if meta.get("format") != FORMAT_TAG or "card" not in meta:
        raise ModelFileError(f"{p} is a safetensors file but not an RS Seg model (no model card); "
                             f"create one with 'python -m engine init-model' or 'train'")
    try:
        card = json.loads(meta["card"])
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{p}: the model card is corrupt ({exc})") from None
    version = card.get("schema_version")
    if not isinstance(version, int):
        raise ModelFileError(f"{p}: the model card has no schema version; the file is corrupt")
    if version > SCHEMA_VERSION:
        raise ModelFileError(
            f"{p} was written by a newer RS Seg (model schema {version}; this engine reads up to "
            f"{SCHEMA_VERSION}). Update the RS Seg plugin/engine to use it")
    validate_card(card, source=str(p))
    return card


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
    for key in ("tile_size", "overlap"):
        if not isinstance(card.get(key), int):
            raise bad(f"no {key}")
