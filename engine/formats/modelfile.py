"""Model files: one ``.rsmodel`` file holding a model card and the network weights.

The file is a safetensors container: the weights are plain tensors and the card is a JSON string
in the header metadata.  Loading parses a JSON header and copies raw tensor bytes; nothing in the
file is ever executed (no pickle), so a crafted file cannot run code.

``.onnx`` files load through :mod:`engine.formats.onnx` (onnxruntime; no torch needed), so every
``load_model``/``read_card`` caller accepts them.  torch is imported only for ``.rsmodel`` files.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from .. import __version__
from ..jobs import InputError, ModelFileError, atomic_output
from .card import FORMAT_TAG, SCHEMA_VERSION, LoadedModel, is_onnx, validate_card
from .definition import Definition, apply_definition, onnx_overrides, read_definition

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
    An ONNX file's card comes from its metadata and graph (:func:`engine.formats.onnx.model.load_onnx`).
    """
    if is_onnx(path):
        return load_model(path, "cpu").card
    from safetensors import SafetensorError, safe_open
    p = _existing(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        with p.open("rb") as fh:
            raise _unreadable(p, exc, fh.read(2)) from None
    definition = read_definition(p)
    card = _card(p, meta)
    return card if definition is None else apply_definition(card, definition)


def load_model(path: str | Path, device: Any = "cpu", overrides: Optional[Definition] = None,
               beside: bool = True) -> LoadedModel:
    """Load a model file with the model definition beside it (unless ``beside`` is False; see
    :mod:`engine.formats.definition`) and ``overrides`` on top: validate its card, rebuild the
    network, load the weights (strictly).  ``.onnx`` files become an
    :class:`engine.formats.onnx.model.OnnxModel` on ``device``."""
    if isinstance(device, str):  # "auto", "cuda:1" … as the options spell them
        from ..compute.devices import resolve_device
        device = resolve_device(device)
    definition = (read_definition(path) if beside else None) or Definition()
    if overrides is not None:
        definition = definition.merged(overrides)
    if is_onnx(path):
        from .onnx.model import load_onnx
        lm = load_onnx(path, device, overrides=onnx_overrides(definition, path))
    else:
        lm = _load_file(path, device)
    if not definition.is_empty():
        lm.card = apply_definition(lm.card, definition)
    return lm


def _load_file(path: str | Path, device: Any) -> LoadedModel:
    """An .rsmodel file as it is."""
    from ..models import build
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
