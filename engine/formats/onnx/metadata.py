"""RS Seg card ↔ ONNX ``metadata_props``: the RS Seg card, Deepness's keys, or graph shapes.

Deepness (QGIS plugin) reads JSON-encoded values under documented keys: ``model_type``
('Segmentor'), ``class_names`` ({channel: name}, or one such dict per output), ``resolution``
(cm/px), ``tile_size`` (the docs spell it ``tiles_size``; both are written and read),
``tiles_overlap`` (% of the tile), ``standardization_mean``/``standardization_std`` (applied after
scaling the input to 0–1), ``seg_thresh`` (probabilities below it count as 0; 0 disables it) and
``seg_small_segment`` (median-filter size; 0 disables it).

Deepness always feeds ``bands / 255``.  RS Seg exports fold the card's normalisation into the
graph, so their graph input is exactly that and the Deepness standardisation is the identity.

A loaded ONNX model's card has an ``onnx`` section, the runtime contract (:class:`Spec`).
"""
from __future__ import annotations

import ast
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ...io.classes import CHANGE_CLASSES, class_colour
from ..card import DEFAULT_BAND_NAMES, validate_card
from ...jobs import InputError, ModelFileError
from .graph import Graph

CARD_KEY = "rs_seg_card"          # the RS Seg card (JSON)
CONTRACT_KEY = "rs_seg_graph"     # how the exported graph is fed (JSON)
DEEPNESS_SCALE = 255.0            # Deepness divides every band by 255
DEFAULT_TILE = 512
DEEPNESS_THRESHOLD = 0.5          # Deepness's probability threshold when seg_thresh is absent
DEEPNESS_SMALL_SEGMENT = 9        # … and its small-segment median filter (seg_small_segment)
OTHER_KINDS = {"detector": "an object detector", "regressor": "a regression model",
               "superresolution": "a super-resolution model",
               "recognition": "an image-recognition (retrieval) model"}


@dataclass
class Overrides:
    """What the user says about an ONNX model that its metadata does not (``--classes`` …)."""

    classes: Optional[Sequence[str]] = None
    tile: Optional[int] = None
    input_scale: Optional[float] = None
    activation: Optional[str] = None  # 'none', 'softmax' or 'sigmoid' (the definition's word)
    output: int = 0  # index of the graph output to run


@dataclass
class Spec:
    """How to feed an ONNX graph and read its output (stored as the card's ``onnx`` section).

    The reader hands each input group standardised with the card's mean/std (``z``); the graph
    gets ``z * scale + offset`` per band.  ``activation`` is applied to the chosen output
    ('softmax', 'sigmoid' or 'none' when it already is probabilities); ``binary``: one channel
    (or a channel-less map) p → (1 − p, p).  ``margin``: pixels per side the output is smaller
    than the input.  ``batch``/``size``: fixed graph batch and edge (None when dynamic).
    """

    inputs: Dict[str, str]
    scale: Dict[str, List[float]]
    offset: Dict[str, List[float]]
    output: str
    outputs: List[str]
    activation: str
    binary: bool
    channel_axis: bool = True
    margin: int = 0
    batch: Optional[int] = None
    size: Optional[int] = None
    input_multiple: int = 1
    source: str = "graph"
    providers: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        """The JSON-ready ``onnx`` section of a card."""
        return asdict(self)


def export_metadata(card: Mapping[str, Any], contract: Mapping[str, Any]) -> Dict[str, str]:
    """``metadata_props`` of an exported model: the card, the graph contract and, for one-input
    segmentation models, Deepness's keys (Deepness runs single-input graphs only)."""
    meta = {CARD_KEY: json.dumps(card), CONTRACT_KEY: json.dumps(contract)}
    if card["task"] == "segmentation" and list(card["inputs"]) == ["image"]:
        meta.update(deepness_metadata(card))
    return meta


def deepness_metadata(card: Mapping[str, Any]) -> Dict[str, str]:
    """Deepness's keys for ``card`` (values JSON-encoded, as Deepness parses them)."""
    tile = int(card["tile_size"])
    bands = len(card["inputs"]["image"]["bands"])
    values: Dict[str, Any] = {
        "model_type": "Segmentor",
        "class_names": {i: c["name"] for i, c in enumerate(card["classes"])},
        "tile_size": tile, "tiles_size": tile,
        "tiles_overlap": round(100 * int(card["overlap"]) / tile),
        # normalisation is folded into the graph: Deepness's 0–1 input is what it expects
        "standardization_mean": [0.0] * bands, "standardization_std": [1.0] * bands,
        # RS Seg takes the most probable class; 0 switches Deepness's threshold off to match
        "seg_thresh": 0.0, "seg_small_segment": 0,
    }
    if card.get("gsd_m"):
        values["resolution"] = round(float(card["gsd_m"]) * 100, 6)
    return {k: json.dumps(v) for k, v in values.items()}


def _json(meta: Mapping[str, str], key: str) -> Any:
    if key not in meta:
        return None
    text = meta[key]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        try:  # Deepness accepts Python literals too ({0: 'a'} with integer keys)
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ModelFileError(f"the ONNX metadata '{key}' is not valid JSON ({text[:80]!r}); "
                                 f"fix or remove that metadata entry") from None


def model_kind(graph: Graph) -> Optional[str]:
    """Why this graph is not a segmentation model (its kind, in words), or None if it may be."""
    declared = _json(graph.metadata, "model_type")
    if declared is not None and str(declared).lower() in OTHER_KINDS:
        return f"{OTHER_KINDS[str(declared).lower()]} (Deepness model_type '{declared}')"
    out = graph.outputs[0].shape
    if len(out) == 2 or (len(out) == 4 and out[2:] == [1, 1]):
        return "an image classifier (one score vector per image, not a class per pixel)"
    image = graph.inputs[0].fixed if graph.inputs else []
    if len(out) == 3 and not _map_like(out, image):
        return "an object detector (its output is a list of boxes, not a class map)"
    if len(out) not in (3, 4):
        return f"not a segmentation model (output of rank {len(out)}, expected B×C×H×W)"
    return None


def _map_like(out: Sequence[Any], image: Sequence[Optional[int]]) -> bool:
    """A B×H×W output: its last two axes match the input's, are equal, or are symbolic."""
    h, w = out[1], out[2]
    if isinstance(h, int) and isinstance(w, int):
        return (len(image) == 4 and image[2:] == [h, w]) or (h == w and h > 16)
    return True


def describe(graph: Graph, output_shape: Sequence[int], tile: int,
             overrides: Overrides) -> Dict[str, Any]:
    """The card of an ONNX model: its RS Seg card, else its Deepness metadata, else its shapes.

    ``output_shape`` is the chosen output's shape for a ``tile``×``tile`` batch of one (probed
    when the graph leaves it symbolic).
    """
    kind = model_kind(graph) or _upscaling(output_shape, tile)
    if kind is not None and CARD_KEY not in graph.metadata:
        raise ModelFileError(f"{graph.path.name} is {kind}; RS Seg needs a segmentation or change "
                             f"model (a class score per pixel) — pick a Deepness 'Segmentor' or "
                             f"an RS Seg export")
    channels = int(output_shape[1]) if len(output_shape) == 4 else 1
    out_size = int(output_shape[-1])
    if out_size > tile or (tile - out_size) % 2:
        raise ModelFileError(f"{graph.path.name}: the output ({out_size} px) is not a centred crop "
                             f"of the {tile} px input; RS Seg needs a class map the size of the "
                             f"input or smaller by the same margin on each side")
    if out_size < tile // 2:
        raise ModelFileError(f"{graph.path.name}: the output ({out_size} px) is much smaller than "
                             f"the {tile} px input (a down-sampled map); RS Seg needs a class map "
                             f"at the input's resolution")
    if CARD_KEY in graph.metadata:
        return _rs_seg_card(graph, channels, out_size, tile)
    return _foreign_card(graph, channels, out_size, tile, overrides,
                         channel_axis=len(output_shape) == 4)


def _upscaling(output_shape: Sequence[int], tile: int) -> Optional[str]:
    """'a super-resolution model …' when the output map is larger than the input window."""
    size = int(output_shape[-1]) if len(output_shape) >= 3 else 0
    if size > tile:
        return (f"a super-resolution model (a {size} px output for a {tile} px input, "
                f"{size / tile:g}× larger)")
    return None


def check_inputs(graph: Graph) -> None:
    """Raise :class:`ModelFileError` unless the graph takes one or two float32 NCHW images."""
    name = graph.path.name
    if len(graph.inputs) not in (1, 2):
        raise ModelFileError(f"{name} takes {len(graph.inputs)} inputs; RS Seg runs models with "
                             f"one image input (segmentation) or two (change: before, after)")
    for t in graph.inputs:
        if len(t.shape) != 4:
            raise ModelFileError(f"{name}: input '{t.name}' has shape {t.shape}; RS Seg feeds "
                                 f"images as B×C×H×W (NCHW)")
        last, second = t.shape[3], t.shape[1]
        if isinstance(last, int) and last <= 16 and (not isinstance(second, int) or second > 16):
            raise ModelFileError(f"{name}: input '{t.name}' looks channels-last ({t.shape}); "
                                 f"RS Seg feeds B×C×H×W — export the model with NCHW input")
        if not isinstance(t.shape[1], int):
            raise ModelFileError(f"{name}: input '{t.name}' has no fixed band count ({t.shape}); "
                                 f"export it with a fixed number of channels")
        if t.dtype != "float32":
            raise ModelFileError(f"{name}: input '{t.name}' is {t.dtype}; RS Seg feeds float32 "
                                 f"images — export the model with a float32 input")


def graph_tile(graph: Graph, overrides: Overrides) -> int:
    """The window edge to run the graph at: fixed by the graph, else the user's, else metadata."""
    fixed = graph.inputs[0].fixed[2:] if graph.inputs and len(graph.inputs[0].shape) == 4 else []
    size = fixed[0] if len(fixed) == 2 and fixed[0] and fixed[0] == fixed[1] else None
    if len(fixed) == 2 and fixed[0] != fixed[1] and None not in fixed:
        raise ModelFileError(f"{graph.path.name} takes {fixed[0]}×{fixed[1]} windows; RS Seg runs "
                             f"square windows — export the model with a square or dynamic input")
    if size is not None:
        if overrides.tile is not None and overrides.tile != size:
            raise InputError(f"{graph.path.name} only takes {size}×{size} windows; use --tile "
                             f"{size} (or export the model with a dynamic input size)")
        return size
    if overrides.tile is not None:
        return int(overrides.tile)
    card = _json(graph.metadata, CARD_KEY)
    if card is not None:
        return int(card["tile_size"])
    meta = _json(graph.metadata, "tile_size") or _json(graph.metadata, "tiles_size")
    return int(meta) if meta else DEFAULT_TILE


def chosen_output(graph: Graph, index: int) -> str:
    """The name of output ``index`` of ``graph``, or :class:`InputError` listing the outputs."""
    if not 0 <= index < len(graph.outputs):
        names = ", ".join(f"{i}: {o.name}" for i, o in enumerate(graph.outputs))
        raise InputError(f"{graph.path.name} has {len(graph.outputs)} output(s) ({names}); "
                         f"give --output-index between 0 and {len(graph.outputs) - 1}")
    return graph.outputs[index].name


def _common_spec(graph: Graph, channels: int, out_size: int, tile: int, channel_axis: bool,
                 groups: Sequence[str], output: int = 0) -> Dict[str, Any]:
    first = graph.inputs[0]
    fixed_size = first.fixed[2] if first.fixed[2] is not None else None
    return {"inputs": {g: t.name for g, t in zip(groups, graph.inputs)},
            "output": chosen_output(graph, output), "outputs": [o.name for o in graph.outputs],
            "binary": channels == 1, "channel_axis": channel_axis,
            "margin": (tile - out_size) // 2, "batch": first.fixed[0], "size": fixed_size}


def _rs_seg_card(graph: Graph, channels: int, out_size: int, tile: int) -> Dict[str, Any]:
    """An RS Seg export: its own card, fed through the folded normalisation."""
    card = _json(graph.metadata, CARD_KEY)
    contract = _json(graph.metadata, CONTRACT_KEY) or {}
    validate_card(card, source=graph.path.name)
    groups = list(contract.get("inputs") or card["inputs"])
    scale_in = float(contract.get("input_scale", DEEPNESS_SCALE))
    if channels != len(card["classes"]) and not (channels == 1 and len(card["classes"]) == 2):
        raise ModelFileError(f"{graph.path.name}: the graph gives {channels} channels but its card "
                             f"has {len(card['classes'])} classes; the file is damaged")
    inputs = card["inputs"]
    spec = Spec(**_common_spec(graph, channels, out_size, tile, True, groups),
                scale={g: [float(s) / scale_in for s in inputs[g]["std"]] for g in groups},
                offset={g: [float(m) / scale_in for m in inputs[g]["mean"]] for g in groups},
                activation="none" if graph.activations.get(graph.outputs[0].name) in
                ("Softmax", "Sigmoid") else "softmax",
                input_multiple=int(contract.get("input_multiple", 1)), source="rs_seg")
    card = dict(card, onnx=spec.to_dict())
    if spec.size is not None:
        card["tile_size"] = spec.size
    return card


def _foreign_card(graph: Graph, channels: int, out_size: int, tile: int, overrides: Overrides,
                  channel_axis: bool) -> Dict[str, Any]:
    """A Deepness (or bare) ONNX model: the card from its metadata, shapes and the overrides."""
    meta = graph.metadata
    deepness = any(k in meta for k in ("model_type", "class_names", "names"))
    final = graph.activations.get(chosen_output(graph, overrides.output), "")
    if overrides.activation is not None:
        activation = ("sigmoid" if overrides.activation == "softmax" and channels == 1
                      else overrides.activation)
    elif final in ("Softmax", "Sigmoid"):
        activation = "none"
    elif deepness:  # a probe found scores outside 0–1: logits, whatever Deepness would assume
        activation = "sigmoid" if channels == 1 else "softmax"
    elif channels == 1 and not overrides.classes and len(graph.inputs) == 1:
        # (two inputs with one unbounded channel: change logits, the usual change head)
        raise ModelFileError(
            f"{graph.path.name} is a regression model as far as its graph tells (one unbounded "
            f"output channel, no sigmoid, no Deepness metadata); if it is a binary segmentation "
            f"model give its classes, e.g. --classes background,building")
    else:
        activation = "sigmoid" if channels == 1 else "softmax"
    task = "change" if len(graph.inputs) == 2 else "segmentation"
    names = _class_names(graph, channels, overrides, task)
    classes = ([dict(c) for c in CHANGE_CLASSES] if task == "change" and overrides.classes is None
               and names == [c["name"] for c in CHANGE_CLASSES] else
               [{"value": i, "name": n, "color": class_colour(i)} for i, n in enumerate(names)])
    bands = int(graph.inputs[0].shape[1])
    scale = float(overrides.input_scale or DEEPNESS_SCALE)
    if scale <= 0:
        raise InputError(f"the input scale must be positive (got {scale}); it is the pixel value "
                         f"the model reads as 1.0, e.g. 255 for 8-bit imagery")
    mean = _json(meta, "standardization_mean")
    std = _json(meta, "standardization_std")
    if mean is None or std is None:
        mean, std = [0.0] * bands, [1.0] * bands
    mean, std = _per_band(mean, bands, "standardization_mean", graph), \
        _per_band(std, bands, "standardization_std", graph)
    groups = ["t1", "t2"] if task == "change" else ["image"]
    band_names = DEFAULT_BAND_NAMES.get(bands, [f"B{i}" for i in range(1, bands + 1)])
    group = {"bands": [{"index": i + 1, "name": n} for i, n in enumerate(band_names)],
             "dtype": "uint8" if scale == DEEPNESS_SCALE else "float32",
             "mean": [m * scale for m in mean], "std": [s * scale for s in std], "nodata": None}
    overlap_pct = _json(meta, "tiles_overlap")
    overlap = round(tile * float(overlap_pct) / 100) if overlap_pct is not None else tile // 8
    margin = (tile - out_size) // 2
    overlap = max(overlap, 2 * margin + (tile // 16 if margin else 0))
    overlap = min(overlap, (tile - 1) // 2)  # the grid needs tile > 2 × overlap
    resolution = _json(meta, "resolution")
    threshold = _json(meta, "seg_thresh")
    if threshold is None and deepness:
        threshold = DEEPNESS_THRESHOLD
    small = _json(meta, "seg_small_segment")
    if small is None and deepness:
        small = DEEPNESS_SMALL_SEGMENT
    spec = Spec(**_common_spec(graph, channels, out_size, tile, channel_axis, groups,
                               overrides.output),
                scale={g: [1.0] * bands for g in groups}, offset={g: [0.0] * bands for g in groups},
                activation=activation,
                source="deepness" if deepness else "graph")
    return {"schema_version": 1, "name": graph.path.stem, "task": task, "architecture": "onnx",
            "hparams": {}, "inputs": {g: dict(group) for g in groups}, "classes": classes,
            "tile_size": tile, "overlap": int(overlap),
            "gsd_m": float(resolution) / 100 if resolution else None,
            "threshold": float(threshold) if threshold is not None and task == "segmentation"
            else None,
            "small_segment": int(small) if small and task == "segmentation" else None,
            "training": {"source": "ONNX file (" + ("Deepness metadata" if deepness else
                                                    "no metadata: card from the graph shapes") + ")",
                         "opset": graph.opset},
            "onnx": spec.to_dict()}


def _per_band(values: Any, bands: int, key: str, graph: Graph) -> List[float]:
    values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    if len(values) == 1:
        values = values * bands
    if len(values) != bands or (key.endswith("std") and min(values) <= 0):
        raise ModelFileError(f"{graph.path.name}: metadata '{key}' must hold {bands} values"
                             f"{' above 0' if key.endswith('std') else ''} (got {values}); fix "
                             f"the model's metadata")
    return values


def _class_names(graph: Graph, channels: int, overrides: Overrides, task: str) -> List[str]:
    """Class names: the user's, else Deepness's for the first output, else defaults."""
    wanted = 2 if channels == 1 else channels
    if overrides.classes is not None:
        names = [str(n) for n in overrides.classes]
        if len(names) != wanted:
            raise InputError(f"{len(names)} class names were given but {graph.path.name} "
                             f"predicts {wanted} classes; give {wanted} names")
        return names
    meta = _json(graph.metadata, "class_names")
    if meta is None:
        meta = _json(graph.metadata, "names")
    if isinstance(meta, list):
        meta = meta[overrides.output] if len(meta) > overrides.output else None
    if isinstance(meta, dict) and meta:
        names = [str(v) for _, v in sorted(meta.items(), key=lambda kv: int(kv[0]))]
        if channels == 1 and len(names) == 1:
            names = ["background", names[0]]
        if len(names) == wanted:
            return names
        raise ModelFileError(f"{graph.path.name}: metadata 'class_names' lists {len(names)} "
                             f"classes but the model predicts {wanted}; fix its metadata or give "
                             f"--classes")
    if task == "change":
        return [c["name"] for c in CHANGE_CLASSES]
    if channels == 1:
        return ["background", "foreground"]
    return [f"class {i}" for i in range(channels)]

