"""``python -m engine describe MODEL [--from-json FILE] [--set KEY=VALUE …] [--write]``.

Creates or edits the model definition beside a model (:mod:`engine.formats.definition`): the
existing definition, then ``--from-json`` (an RS Seg definition, or the training JSON that
ships beside some published models: ``data.dataset_statistics`` with ``img`` mean/std and
``band_names``), then each ``--set``.  The model is loaded with the result before anything is
written, so a definition that does not fit the model (class count, band count) is refused.
Without ``--write`` it prints what it would write.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..jobs import InputError
from .definition import (Definition, definition_path, load_definition_file, parse_definition,
                         read_definition, write_definition)

COMMAND = "describe"
HELP = "create or edit the model definition (MODEL.onnx.json) beside a model"
_LIST_KEYS = ("bands", "mean", "std", "scale", "offset", "classes")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``describe``."""
    p.add_argument("model", help="the .onnx or .rsmodel file")
    p.add_argument("--from-json", metavar="FILE",
                   help="start from this JSON: an RS Seg definition or a model's training JSON "
                        "(data.dataset_statistics: band_names, img mean/std)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="set one key, e.g. input_scale=10000, bands=B02,B03,B04, "
                        "classes=clear,cloud,shadow, threshold=0.5 (repeatable)")
    p.add_argument("--write", action="store_true",
                   help="write the definition beside the model as MODEL_FILE.json (default: print it)")


def describe_model(model: str | Path, from_json: Optional[str | Path] = None,
                   settings: Sequence[str] = (), write: bool = False) -> Dict[str, Any]:
    """The model's definition after ``from_json`` and ``settings``, checked against the model;
    written beside it when ``write``.  Returns {definition, path, written, card}."""
    if not Path(model).is_file():
        raise InputError(f"model file {model} does not exist; check the path")
    definition = read_definition(model) or Definition()
    if from_json is not None:
        definition = definition.merged(imported_definition(from_json))
    if settings:
        definition = definition.merged(parse_definition(parse_settings(settings), "--set"))
    return checked(model, definition, write)


def save_definition(model: str | Path, data: Mapping[str, Any]) -> Dict[str, Any]:
    """Check the definition ``data`` (its JSON form) against ``model`` and write it beside it
    (the model card dialog's Save); an empty definition removes the file."""
    definition = parse_definition(data, "the definition")
    if definition.is_empty():
        definition_path(model).unlink(missing_ok=True)
    return checked(model, definition, write=not definition.is_empty())


def checked(model: str | Path, definition: Definition, write: bool) -> Dict[str, Any]:
    """Load ``model`` with ``definition`` (refusing one that does not fit it), then write it
    when ``write``.  Returns {definition, path, written, card}."""
    from .overrides import load_defined
    lm = load_defined(model, "cpu", definition, beside=False)
    path = write_definition(model, definition) if write else definition_path(model)
    return {"definition": definition.as_dict(), "path": str(path), "written": write,
            "card": lm.card}


def imported_definition(path: str | Path) -> Definition:
    """A definition from ``path``: an RS Seg definition, or a training JSON with
    ``data.dataset_statistics`` (band names and ``img`` = [mean, std] per band)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p} does not exist; check the path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{p.name} is not valid JSON ({exc}); give a JSON file") from None
    stats = (data.get("data") or {}).get("dataset_statistics") if isinstance(data, dict) else None
    if not isinstance(stats, Mapping):
        return load_definition_file(p)
    img = stats.get("img")
    values: Dict[str, Any] = {}
    if stats.get("band_names"):
        values["bands"] = list(stats["band_names"])
    if isinstance(img, list) and len(img) == 2:
        values["mean"], values["std"] = img[0], img[1]
    size = data["data"].get("target_size")
    if isinstance(size, list) and size and size[0] == size[-1]:
        values["tile"] = int(size[0])
    return parse_definition(values, p.name)


def parse_settings(settings: Sequence[str]) -> Dict[str, Any]:
    """``KEY=VALUE`` strings as definition values: JSON when it parses, comma lists for list
    keys, text otherwise."""
    out: Dict[str, Any] = {}
    for item in settings:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise InputError(f"--set takes KEY=VALUE (got {item!r}), e.g. --set input_scale=10000")
        out[key] = _value(key, text.strip())
    return out


def _value(key: str, text: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    if key in _LIST_KEYS and not isinstance(value, list):
        items: List[Any] = [v.strip() for v in str(text).split(",")]
        value = [json.loads(v) if key not in ("bands", "classes") and _number(v) else v
                 for v in items]
    return value


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def run(args: argparse.Namespace, progress=None) -> None:
    """Run ``describe`` and print the definition (and where it went)."""
    result = describe_model(args.model, args.from_json, args.set, args.write)
    print(json.dumps(result["definition"], indent=2))
    card = result["card"]
    group = next(iter(card["inputs"].values()))
    print(f"the model reads {', '.join(b['name'] for b in group['bands'])} and gives "
          f"{', '.join(c['name'] for c in card['classes'])}")
    if result["written"]:
        print(f"wrote {result['path']}")
    else:
        print(f"(not written: add --write to save it as {result['path']})")
