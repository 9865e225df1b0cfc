"""The user's overrides of what a model says, for every model kind: the command-line options
(``--mean``/``--std``/``--input-scale``/``--classes``/``--threshold``/``--output-index``), their
:class:`~engine.formats.definition.Definition`, and :func:`load_defined`.

The order is the same everywhere (``predict``, ``change``, ``info``, Processing): the model's
own card, then the definition file beside it, then the overrides — later ones win
(:func:`engine.formats.modelfile.load_model` does the loading).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, List, Optional, Union

from .card import LoadedModel
from .definition import Definition, apply_definition


def comma_numbers(kind: Callable[[str], Any], what: str, example: str
                  ) -> Callable[[str], List[Any]]:
    """An argparse type: '1,2,3' → numbers of ``kind``, else a sentence naming ``what``."""
    def parse(text: str) -> List[Any]:
        try:
            return [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be comma-separated numbers, e.g. "
                                             f"{example} (got {text!r})") from None
    return parse


_floats = comma_numbers(float, "mean and std", "0.485,0.456,0.406")


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
        p.add_argument("--small-segment", type=int, metavar="N",
                       help="median filter of N pixels over the class map, as Deepness removes "
                            "small segments (default: the model's seg_small_segment, 9 for "
                            "Deepness models, else none; 0 switches it off)")
    p.add_argument("--output-index", type=int, metavar="N",
                   help="the graph output to run (models with several outputs; default 0)")


def overrides_from_args(a: argparse.Namespace) -> Definition:
    """The overrides given on a command line, as a :class:`Definition`."""
    return definition_of(classes=getattr(a, "classes", None),
                         input_scale=getattr(a, "input_scale", None),
                         mean=getattr(a, "mean", None), std=getattr(a, "std", None),
                         threshold=getattr(a, "threshold", None), tile=getattr(a, "tile", None),
                         small_segment=getattr(a, "small_segment", None),
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
