"""What an ONNX graph takes and gives: inputs, outputs, their final activation, its metadata.

Read with the ``onnx`` package when it is installed (protobuf parsing only; nothing in the file
is executed): graphs with operators outside the standard domains need a custom-op library —
native code loaded from a path — and are refused before onnxruntime sees them.  Without ``onnx``
(an onnxruntime-only install) the same facts come from the onnxruntime session; onnxruntime
itself refuses unknown custom operators, as RS Seg never registers a custom-op library.  When no
final Softmax/Sigmoid is visible, :func:`probe_activation` tells from one run whether the output
already is probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np

from ...jobs import InputError, ModelFileError

# Operator domains onnxruntime implements itself; anything else needs a custom-op library.
STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft", "ai.onnx.preview.training")
# Ops that pass a tensor through unchanged when looking for a graph's final activation.
_PASS_THROUGH = ("Identity", "Cast", "Reshape", "Squeeze", "Unsqueeze")

Dim = Union[int, str, None]


@dataclass(frozen=True)
class Tensor:
    """A graph input or output: name, shape (int, symbolic name or None per axis), element type."""

    name: str
    shape: List[Dim]
    dtype: str

    @property
    def fixed(self) -> List[Optional[int]]:
        """The shape with symbolic axes as None."""
        return [d if isinstance(d, int) and d > 0 else None for d in self.shape]


@dataclass
class Graph:
    """The parts of an ONNX model that decide how RS Seg runs it."""

    path: Path
    inputs: List[Tensor]
    outputs: List[Tensor]
    activations: Dict[str, str]  # output name → final op type ('Softmax', 'Sigmoid', …)
    metadata: Dict[str, str] = field(default_factory=dict)
    opset: int = 0


def existing(path: Union[str, Path]) -> Path:
    """``path`` as a Path, or :class:`InputError` when there is no such file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"model file {p} does not exist; check the path")
    return p


def onnx_package() -> Optional[object]:
    """The ``onnx`` package, or None when only onnxruntime is installed."""
    try:
        import onnx
    except ImportError:
        return None
    return onnx


def read_graph(path: Union[str, Path], onnx: object) -> Graph:
    """Parse and check the ONNX file at ``path`` with the ``onnx`` package (readable, standard
    operators only)."""
    p = existing(path)
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # DecodeError, or protobuf's own errors on garbage
        raise ModelFileError(f"{p.name} is not a readable ONNX model ({type(exc).__name__}: "
                             f"{str(exc)[:200]}); the file is damaged or not ONNX — "
                             f"download or export it again") from None
    graph = model.graph
    if not graph.node or not graph.output:
        raise ModelFileError(f"{p.name} is not a usable ONNX model (no graph nodes or outputs); "
                             f"the file is damaged or not ONNX — download or export it again")
    check_operators(model, p)
    initialisers = {i.name for i in graph.initializer}
    inputs = [_tensor(v, onnx) for v in graph.input if v.name not in initialisers]
    outputs = [_tensor(v, onnx) for v in graph.output]
    producers = {o: n for n in graph.node for o in n.output}
    activations = {}
    for out in outputs:
        node = producers.get(out.name)
        while node is not None and node.op_type in _PASS_THROUGH:
            node = producers.get(node.input[0])
        activations[out.name] = node.op_type if node is not None else ""
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return Graph(p, inputs, outputs, activations,
                 {m.key: m.value for m in model.metadata_props}, opset)


def check_operators(model: object, path: Path) -> None:
    """Refuse graphs whose operators need a custom-op library (native code outside the file)."""
    custom = sorted({n.domain for n in model.graph.node if n.domain not in STANDARD_DOMAINS})
    if custom:
        raise ModelFileError(
            f"{path.name} uses custom operators (domain {', '.join(custom)}) that need a custom-op "
            f"library; RS Seg never loads those because they run native code from outside the "
            f"model file — export the model with standard ONNX operators only")


def _tensor(value: object, onnx: object) -> Tensor:
    t = value.type.tensor_type
    shape: List[Dim] = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            shape.append(int(d.dim_value))
        else:
            shape.append(d.dim_param or None)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "unknown"
    return Tensor(value.name, shape, dtype)


_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(uint8)": "uint8", "tensor(int64)": "int64"}


def graph_from_session(path: Path, session: object) -> Graph:
    """The :class:`Graph` as onnxruntime reports it (activations unknown: empty)."""
    def tensor(arg: object) -> Tensor:
        shape = [d if isinstance(d, int) or d is None else str(d) for d in arg.shape]
        return Tensor(arg.name, shape, _ORT_TYPES.get(arg.type, arg.type))
    outputs = [tensor(o) for o in session.get_outputs()]
    return Graph(path, [tensor(i) for i in session.get_inputs()], outputs,
                 {o.name: "" for o in outputs},
                 dict(session.get_modelmeta().custom_metadata_map), 0)


def probe_activation(scores: np.ndarray) -> str:
    """'Softmax' or 'Sigmoid' when one run's output already is probabilities, else ''."""
    if scores.size == 0 or scores.min() < 0 or scores.max() > 1:
        return ""
    if scores.ndim == 4 and scores.shape[1] > 1:
        return "Softmax" if np.allclose(scores.sum(axis=1), 1, atol=1e-3) else ""
    return "Sigmoid"
