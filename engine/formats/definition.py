"""The model definition beside a model file: ``MODEL.onnx.json`` (or ``MODEL.rsmodel.json``).

What a bare model does not say about itself, in one small JSON file next to it (read whenever it
is present; anchors: ArcGIS's ``.emd`` model definition and Deepness's ONNX metadata keys)::

    {"rs_seg_definition": 1,
     "bands": ["B02", "B03", "B04", "B08"],        raster bands by name, in the model's order
     "input_scale": 10000,                         the pixel value the model reads as 1.0
     "mean": [...], "std": [...],                  per band, after input_scale (Deepness's rule)
     "scale": [...], "offset": [...],              or: model input = pixel × scale + offset
     "nodata": 0,
     "classes": ["clear", "cloud"] | [{"value", "name", "color"}, ...],
     "activation": "probabilities" | "logits" | "sigmoid",
     "threshold": 0.5, "small_segment": 9,         Deepness's median filter (0: off)
     "tile": 256, "overlap": 32, "gsd_m": 10,
     "output": 0,                                  the graph output to run (index or name)
     "outputs": [{"layer": "clouds", "classes": [...]}, ...]}   one entry per graph output

Command-line overrides (:class:`Definition` too, from ``--mean`` …) take precedence over the
file, the file over the model's own metadata.  No code in the file is ever run: it is JSON,
checked key by key against this schema.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from ..io.classes import class_colour
from ..jobs import InputError, ModelFileError, atomic_output
from .card import INPUT_GROUPS, validate_card

VERSION_KEY = "rs_seg_definition"
VERSION = 1
ACTIVATIONS = {"probabilities": "none", "logits": "softmax", "sigmoid": "sigmoid"}
NATIVE_SCALES = {"uint8": 255.0, "uint16": 65535.0}


@dataclass
class Definition:
    """A model definition (every field optional: None means "what the model says")."""

    name: Optional[str] = None
    bands: Optional[List[str]] = None
    input_scale: Optional[float] = None
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None
    scale: Optional[List[float]] = None
    offset: Optional[List[float]] = None
    nodata: Optional[float] = None
    classes: Optional[List[Any]] = None
    activation: Optional[str] = None
    threshold: Optional[float] = None
    small_segment: Optional[int] = None
    tile: Optional[int] = None
    overlap: Optional[int] = None
    gsd_m: Optional[float] = None
    output: Optional[Union[int, str]] = None
    outputs: Optional[List[Dict[str, Any]]] = None
    extra: Dict[str, Any] = field(default_factory=dict, repr=False)

    def merged(self, other: "Definition") -> "Definition":
        """This definition with every field ``other`` sets taken from ``other``."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        values.update({k: v for k, v in other.as_dict().items() if k != VERSION_KEY})
        return Definition(**values)

    def as_dict(self) -> Dict[str, Any]:
        """The JSON form: the fields that are set, with the version key first."""
        out: Dict[str, Any] = {VERSION_KEY: VERSION}
        out.update({k: v for k, v in asdict(self).items() if v is not None and k != "extra"})
        return out

    def is_empty(self) -> bool:
        return len(self.as_dict()) == 1


def definition_path(model: Union[str, Path]) -> Path:
    """Where the definition of ``model`` lives: the model's file name plus ``.json``."""
    p = Path(model)
    return p.with_name(p.name + ".json")


_TYPES = {"name": str, "input_scale": float, "nodata": float, "activation": str,
          "threshold": float, "small_segment": int, "tile": int, "overlap": int, "gsd_m": float}
_LISTS = {"bands": str, "mean": float, "std": float, "scale": float, "offset": float}


def parse_definition(data: Mapping[str, Any], source: str = "model definition") -> Definition:
    """A checked :class:`Definition` from its JSON form; :class:`ModelFileError` names the key."""
    def bad(what: str) -> ModelFileError:
        return ModelFileError(f"{source}: {what}; fix the file (python -m engine describe MODEL "
                              f"--set KEY=VALUE --write rewrites it)")

    if not isinstance(data, Mapping):
        raise bad("the definition must be a JSON object")
    if data.get(VERSION_KEY, VERSION) != VERSION:
        raise bad(f"'{VERSION_KEY}' is {data.get(VERSION_KEY)!r}; this engine reads version "
                  f"{VERSION}")
    known = {f.name for f in fields(Definition)} - {"extra"}
    unknown = sorted(set(data) - known - {VERSION_KEY})
    if unknown:
        raise bad(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    values: Dict[str, Any] = {}
    for key, value in data.items():
        if key == VERSION_KEY or value is None:
            continue
        try:
            values[key] = _coerce(key, value)
        except (TypeError, ValueError) as exc:
            raise bad(f"'{key}' {exc}") from None
    d = Definition(**values)
    _check(d, bad)
    return d


def _coerce(key: str, value: Any) -> Any:
    if key in _TYPES:
        kind = _TYPES[key]
        if kind is str:
            if not isinstance(value, str):
                raise TypeError(f"must be text (got {value!r})")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"must be a number (got {value!r})")
        if kind is int and int(value) != value:
            raise ValueError(f"must be a whole number (got {value!r})")
        return kind(value)
    if key in _LISTS:
        if not isinstance(value, list) or not value:
            raise TypeError(f"must be a non-empty list (got {value!r})")
        if _LISTS[key] is str:
            return [str(v) for v in value]
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
            raise TypeError(f"must hold numbers (got {value!r})")
        return [float(v) for v in value]
    if key == "classes":
        return _classes(value)
    if key == "output":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise TypeError(f"must be an output index or name (got {value!r})")
        return value
    if key == "outputs":
        if not isinstance(value, list) or not all(isinstance(o, dict) for o in value):
            raise TypeError("must be a list of objects ({'layer': NAME, 'classes': [...]})")
        out = []
        for o in value:
            extra = sorted(set(o) - {"layer", "classes"})
            if extra:
                raise ValueError(f"entries take 'layer' and 'classes' only (got {extra})")
            entry = {"layer": str(o["layer"])} if "layer" in o else {}
            if "classes" in o:
                entry["classes"] = _classes(o["classes"])
            out.append(entry)
        return out
    raise TypeError("is not a definition key")


def _classes(value: Any) -> List[Dict[str, Any]]:
    """Class entries from names or {value, name, color} objects."""
    if not isinstance(value, list) or not value:
        raise TypeError(f"must be a non-empty list of names or objects (got {value!r})")
    out = []
    for i, c in enumerate(value):
        if isinstance(c, str):
            out.append({"value": i, "name": c, "color": list(class_colour(i))})
        elif isinstance(c, dict) and "name" in c:
            colour = c.get("color", class_colour(int(c.get("value", i))))
            if len(colour) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in colour):
                raise ValueError(f"colour of class {c['name']!r} must be [r, g, b] in 0..255")
            out.append({"value": int(c.get("value", i)), "name": str(c["name"]),
                        "color": [int(v) for v in colour]})
        else:
            raise TypeError(f"entry {c!r} is neither a name nor an object with a 'name'")
    return out


def _check(d: Definition, bad) -> None:
    if d.activation is not None and d.activation not in ACTIVATIONS:
        raise bad(f"'activation' must be one of {', '.join(ACTIVATIONS)} (got {d.activation!r})")
    if d.threshold is not None and not 0 <= d.threshold <= 1:
        raise bad(f"'threshold' is a probability in 0..1 (got {d.threshold})")
    if d.input_scale is not None and d.input_scale <= 0:
        raise bad(f"'input_scale' must be positive (got {d.input_scale}); it is the pixel value "
                  f"the model reads as 1.0, e.g. 255 for 8-bit imagery, 10000 for S2 L2A")
    if (d.mean is None) != (d.std is None):
        raise bad("give 'mean' and 'std' together")
    if (d.scale is None) != (d.offset is None):
        raise bad("give 'scale' and 'offset' together")
    if d.mean is not None and d.scale is not None:
        raise bad("give either mean/std or scale/offset, not both")
    if d.std is not None and min(d.std) <= 0 or d.scale is not None and 0 in d.scale:
        raise bad("'std' must be positive and 'scale' non-zero")
    lengths = {k: len(getattr(d, k)) for k in _LISTS if getattr(d, k) is not None}
    per_band = {k: n for k, n in lengths.items() if n != 1}
    if len(set(per_band.values())) > 1:
        raise bad(f"per-band lists differ in length ({per_band})")
    for key in ("tile", "overlap", "small_segment"):
        value = getattr(d, key)
        if value is not None and value < (1 if key == "tile" else 0):
            raise bad(f"'{key}' must be {'positive' if key == 'tile' else 'zero or more'}")


def read_definition(model: Union[str, Path]) -> Optional[Definition]:
    """The definition beside ``model``, or None when there is none."""
    path = definition_path(model)
    if not path.is_file():
        return None
    return load_definition_file(path)


def load_definition_file(path: Union[str, Path]) -> Definition:
    """A definition from any JSON file (``describe --from-json``)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"model definition {p} does not exist; check the path")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{p.name} is not valid JSON ({exc}); fix it or remove it") from None
    return parse_definition(data, p.name)


def write_definition(model: Union[str, Path], definition: Definition) -> Path:
    """Write ``definition`` beside ``model`` (atomically) and return its path."""
    path = definition_path(model)
    text = json.dumps(definition.as_dict(), indent=2) + "\n"
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def native_scale(group: Mapping[str, Any]) -> float:
    """The pixel value a card input group reads as 1.0 (its ``input_scale``, else by dtype)."""
    if group.get("input_scale"):
        return float(group["input_scale"])
    return NATIVE_SCALES.get(str(group.get("dtype")), 1.0)


def per_band(values: Sequence[float], n: int, key: str) -> List[float]:
    """``values`` for ``n`` bands (one value stands for all), or :class:`InputError`."""
    values = [float(v) for v in values]
    if len(values) == 1:
        values = values * n
    if len(values) != n:
        raise InputError(f"{key} has {len(values)} values but the model reads {n} bands; give "
                         f"one value per band (or one for all)")
    return values


def onnx_overrides(definition: Definition, model: Union[str, Path]) -> Any:
    """What an ONNX model's card is built with (:class:`engine.formats.onnx.metadata.Overrides`)."""
    from .onnx.metadata import Overrides
    return Overrides(
        classes=[c["name"] for c in definition.classes] if definition.classes else None,
        tile=definition.tile, input_scale=definition.input_scale,
        activation=ACTIVATIONS.get(definition.activation) if definition.activation else None,
        output=_output_index(definition.output, model))


def _output_index(output: Union[int, str, None], model: Union[str, Path]) -> int:
    if output is None:
        return 0
    if isinstance(output, int):
        return output
    from .onnx.graph import onnx_package, read_graph
    onnx = onnx_package()
    names = [o.name for o in read_graph(model, onnx).outputs] if onnx is not None else []
    if output not in names:
        raise InputError(f"{Path(model).name} has no output named {output!r} (outputs: "
                         f"{', '.join(names) or 'unknown'}); give its index instead")
    return names.index(output)


def apply_definition(card: Dict[str, Any], d: Definition) -> Dict[str, Any]:
    """A copy of ``card`` with what ``d`` sets (bands, normalisation, classes, tiling …)."""
    card = copy.deepcopy(card)
    onnx = card.get("onnx")
    if onnx is None and (d.activation is not None or d.output not in (None, 0)):
        raise InputError("activation and output apply to ONNX models; an .rsmodel has one "
                         "output of logits")
    groups = [g for g in INPUT_GROUPS[card["task"]] if g in card["inputs"]]
    for g in groups:
        _apply_group(card["inputs"][g], d, folded=bool(onnx and onnx.get("source") == "rs_seg"))
    if d.classes is not None:
        card["classes"] = _renamed_classes(card["classes"], d.classes)
    if d.outputs and onnx is not None:
        onnx["layers"] = [o.get("layer") for o in d.outputs]
        index = onnx["outputs"].index(onnx["output"])  # the output this card was built for
        entry = d.outputs[index] if index < len(d.outputs) else {}
        if "classes" in entry and d.classes is None:
            card["classes"] = _renamed_classes(card["classes"], entry["classes"])
    for key, target in (("threshold", "threshold"), ("small_segment", "small_segment"),
                        ("overlap", "overlap"), ("gsd_m", "gsd_m"), ("name", "name")):
        value = getattr(d, key)
        if value is not None:
            card[target] = value
    if d.tile is not None:
        card["tile_size"] = int(d.tile)
    card.setdefault("training", {})
    card["definition"] = d.as_dict()
    validate_card(card, source="the model with its definition")
    return card


def _apply_group(group: Dict[str, Any], d: Definition, folded: bool) -> None:
    n = len(group["bands"])
    if d.bands is not None:
        if len(d.bands) != n:
            raise InputError(f"the definition names {len(d.bands)} bands but the model reads {n}; "
                             f"list {n} band names")
        group["bands"] = [{"index": i + 1, "name": name} for i, name in enumerate(d.bands)]
    if d.nodata is not None:
        group["nodata"] = d.nodata
    if d.mean is None and d.scale is None and d.input_scale is None:
        return
    if folded and (d.mean is not None or d.scale is not None):
        raise InputError("this ONNX file is an RS Seg export with its normalisation folded into "
                         "the graph; give --input-scale only (mean/std do not apply)")
    old = native_scale(group)
    scale = float(d.input_scale) if d.input_scale is not None else old
    if d.mean is not None:
        mean, std = per_band(d.mean, n, "mean"), per_band(d.std, n, "std")
        group["mean"] = [m * scale for m in mean]
        group["std"] = [s * scale for s in std]
    elif d.scale is not None:  # model input = pixel × scale + offset = (pixel − m) / s
        a, b = per_band(d.scale, n, "scale"), per_band(d.offset, n, "offset")
        group["mean"] = [-o / s for s, o in zip(a, b)]
        group["std"] = [1.0 / s for s in a]
    else:  # the same normalisation, read at another pixel scale
        group["mean"] = [m * scale / old for m in group["mean"]]
        group["std"] = [s * scale / old for s in group["std"]]
    group["input_scale"] = scale
    group["dtype"] = "uint8" if scale == 255 else "uint16" if scale == 65535 else "float32"


def _renamed_classes(current: Sequence[Dict[str, Any]], given: Sequence[Dict[str, Any]]
                     ) -> List[Dict[str, Any]]:
    if len(given) != len(current):
        raise InputError(f"{len(given)} classes were given but the model predicts "
                         f"{len(current)}; give {len(current)} names")
    return [dict(c, value=int(old["value"])) for c, old in zip(given, current)]
