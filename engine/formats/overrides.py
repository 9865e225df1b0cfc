"""Any model with its definition and the user's overrides: :func:`load_defined`.

One path for ``.rsmodel`` and ``.onnx`` files in ``predict``, ``change``, ``info`` and
Processing: the model's own card, then the definition file beside it
(:mod:`engine.formats.definition`), then ``--mean``/``--std``/``--input-scale``/``--classes``/
``--threshold``/``--tile``/``--output-index`` — later ones win.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, List, Optional, Union

from .card import LoadedModel
from .definition import Definition, apply_definition


def _floats(text: str) -> List[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"give comma-separated numbers, e.g. 0.485,0.456,0.406 "
                                         f"(got {text!r})") from None


def add_model_arguments(p: argparse.ArgumentParser, threshold: bool = True) -> None:
    """The overrides every model kind takes (``--tile`` is each command's own)."""
    p.add_argument("--classes", type=lambda t: [c.strip() for c in t.split(",")],
                   help="comma-separated class names (ONNX models without metadata, or new names)")
    p.add_argument("--input-scale", type=float,
                   help="the pixel value the model reads as 1.0 (e.g. 1 for 0–1 reflectance, "
                        "10000 for Sentinel-2 L2A; default: the model's own, 255 for 8-bit)")
    p.add_argument("--mean", type=_floats, help="per-band mean after --input-scale, comma-separated")
    p.add_argument("--std", type=_floats, help="per-band std after --input-scale, comma-separated")
    if threshold:
        p.add_argument("--threshold", type=float,
                       help="class probability threshold as Deepness applies it (default: the "
                            "model's seg_thresh, 0.5 for Deepness models, else none)")
    p.add_argument("--output-index", type=int, metavar="N",
                   help="the graph output to run (models with several outputs; default 0)")


def overrides_from_args(a: argparse.Namespace) -> Definition:
    """The overrides given on a command line, as a :class:`Definition`."""
    return definition_of(classes=getattr(a, "classes", None),
                         input_scale=getattr(a, "input_scale", None),
                         mean=getattr(a, "mean", None), std=getattr(a, "std", None),
                         threshold=getattr(a, "threshold", None), tile=getattr(a, "tile", None),
                         output=getattr(a, "output_index", None))


def definition_of(**values: Any) -> Definition:
    """A :class:`Definition` from keyword values (None: not given), checked like a file."""
    from .definition import parse_definition
    return parse_definition({k: v for k, v in values.items() if v is not None}, "the options")


def load_defined(model: Union[str, Path, LoadedModel], device: Any = "cpu",
                 overrides: Optional[Definition] = None, beside: bool = True) -> LoadedModel:
    """``model`` loaded with the definition beside it (unless ``beside`` is False) and
    ``overrides`` applied (a loaded model: the overrides applied to its card)."""
    if isinstance(model, LoadedModel):
        return model if overrides is None or overrides.is_empty() else \
            LoadedModel(apply_definition(model.card, overrides), model.network, model.path)
    from .modelfile import load_model
    return load_model(model, device, overrides, beside)
