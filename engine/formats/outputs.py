"""Models with several outputs: one class raster (one QGIS layer) per graph output.

Deepness makes a layer for each output of a segmentation graph; RS Seg writes each to its own
file: ``--output`` with ``{output}`` in the name is filled with each output's layer name (from
the model definition's ``outputs``, else the graph's output name).
"""
from __future__ import annotations

import re
from typing import Iterator, List, Tuple

from ..jobs import InputError
from .card import LoadedModel

PLACEHOLDER = "{output}"


def output_names(model: LoadedModel) -> List[str]:
    """The layer name of each output of ``model`` (one name for single-output models)."""
    onnx = model.card.get("onnx") or {}
    graph = list(onnx.get("outputs") or [onnx.get("output") or "class"])
    layers = onnx.get("layers") or []
    return [_safe(layers[i] if i < len(layers) and layers[i] else name)
            for i, name in enumerate(graph)]


def _safe(name: str) -> str:
    """``name`` usable inside a file name."""
    return re.sub(r"[^\w.-]+", "_", str(name)).strip("_") or "output"


def each_output(pattern: str, names: List[str], index: int = 0
                ) -> Iterator[Tuple[int, str, str]]:
    """(output index, layer name, file path) for each output ``pattern`` asks for: every output
    when it holds ``{output}``, else output ``index`` alone under ``pattern`` itself."""
    if PLACEHOLDER not in pattern:
        if not 0 <= index < len(names):
            raise InputError(f"the model has {len(names)} output(s); give --output-index between "
                             f"0 and {len(names) - 1}")
        yield index, names[index], pattern
        return
    if len(set(names)) != len(names):
        raise InputError(f"the model's outputs share a name ({', '.join(names)}); name them in "
                         f"its definition ('outputs': [{{'layer': NAME}}, …])")
    for i, name in enumerate(names):
        yield i, name, pattern.replace(PLACEHOLDER, name)
