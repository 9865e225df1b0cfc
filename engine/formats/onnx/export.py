"""Export an ``.rsmodel`` to ONNX: ``python -m engine export`` and :func:`export_onnx`.

The exported graph takes each card input group as a float32 B×C×H×W input scaled like Deepness
feeds it (``bands / 255``), applies the card's normalisation inside the graph (folded: Deepness
can only express it for 8-bit inputs, other consumers not at all) and returns class
probabilities (softmax) named ``probabilities``.  Change models take two inputs (``t1``, ``t2``).
The batch axis is dynamic; the window edge is fixed at the card's tile by default because
Deepness reads its tile size from the graph (``dynamic_size=True`` makes it dynamic too, for
RS Seg and other runtimes).  The card, the graph contract and Deepness's metadata go into
``metadata_props``.  Before the file is written, onnxruntime runs it on a random batch and the
probabilities must match torch's.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np

from ...jobs import (CancelledFn, Job, ModelFileError, ProgressFn, atomic_output, check_outputs,
                    job_outputs)
from .metadata import DEEPNESS_SCALE, export_metadata
from ...compute.onnx_runtime import ONNX_PIN, require

OPSET = 17
OUTPUT_NAME = "probabilities"
# Largest max |Δprobability| between onnxruntime and torch (fp32) accepted at export.
TOLERANCE = 1e-4
# Architectures torch cannot trace into a graph, with the reason (one sentence each).
NOT_EXPORTABLE: Dict[str, str] = {
    "srcbtfusion": "its attention modules pool to sizes computed from the input (adaptive "
                   "pooling to H×1 strips), which torch's ONNX exporter cannot express",
    "vsgnet": "its frozen DINOv2 encoder resizes the position embeddings with bicubic "
              "interpolation to a scale factor, which torch's ONNX exporter cannot express",
}


@job_outputs
def export_onnx(model: str | Path, output: str | Path, opset: int = OPSET,
                dynamic_size: bool = False, progress: Optional[ProgressFn] = None,
                cancelled: Optional[CancelledFn] = None) -> Dict[str, Any]:
    """Write ``model`` (an ``.rsmodel`` file) as ONNX to ``output``, atomically.

    Returns a summary: output path, architecture, inputs, opset, dynamic axes, the max
    |Δprobability| onnxruntime vs torch on a random batch, and notes (e.g. what Deepness cannot
    use).
    """
    job = Job(progress, cancelled)
    require("torch", "torch==2.13.0", "exporting models to ONNX")
    onnx = require("onnx", ONNX_PIN, "exporting models to ONNX")
    from ..modelfile import load_model
    if opset < OPSET:
        raise ModelFileError(f"opset {opset} is too old; export with opset {OPSET} or newer")
    check_outputs({"--output": output}, [model])
    lm = load_model(model, "cpu")
    card = lm.card
    arch = card["architecture"]
    if card["task"] == "pretrained":
        raise ModelFileError(f"{Path(model).name} is a pre-trained backbone without classes; "
                             f"fine-tune it (train --init) and export the result")
    if arch in NOT_EXPORTABLE:
        raise ModelFileError(f"{arch} cannot be exported to ONNX: {NOT_EXPORTABLE[arch]}")
    job.report(0.05, "export: tracing the network")
    groups = list(card["inputs"])
    tile = int(card["tile_size"])
    wrapper = deployable(lm.network, card)
    example = _example(card, tile, batch=2)
    data = _trace(wrapper, example, groups, opset, dynamic_size, arch)
    job.check()
    graph = onnx.load_from_string(data)
    contract = {"inputs": {g: g for g in groups}, "output": OUTPUT_NAME,
                "input_scale": DEEPNESS_SCALE, "normalisation": "folded",
                "input_multiple": _input_multiple(arch), "dynamic_size": dynamic_size,
                "opset": opset}
    for key, value in export_metadata(card, contract).items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    graph.producer_name = "rs-seg"
    data = graph.SerializeToString()
    job.report(0.6, "export: checking onnxruntime against torch")
    diff = _max_difference(wrapper, data, example)
    if not diff <= TOLERANCE:
        raise ModelFileError(f"{arch} exported, but onnxruntime's probabilities differ from "
                             f"torch's by {diff:.2g} (> {TOLERANCE:g}); the architecture uses an "
                             f"operator the ONNX export does not reproduce")
    with atomic_output(output) as tmp:
        tmp.write_bytes(data)
    job.report(1.0, "export: done")
    return {"output": str(output), "architecture": arch, "task": card["task"],
            "inputs": groups, "opset": opset, "tile": tile, "dynamic_size": dynamic_size,
            "max_abs_diff": diff, "notes": _notes(card)}


def deployable(network: Any, card: Dict[str, Any]) -> Any:
    """A torch module: 0–1 scaled inputs (one per card group, in order) → class probabilities,
    with the card's normalisation folded in."""
    import torch

    from ...compute.backend import logits_of

    class Deployable(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = network.eval()
            self.groups = list(card["inputs"])
            for g in self.groups:
                spec = card["inputs"][g]
                self.register_buffer(f"mean_{g}", _column(spec["mean"]))
                self.register_buffer(f"std_{g}", _column(spec["std"]))

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            named = {g: (x * DEEPNESS_SCALE - getattr(self, f"mean_{g}"))
                     / getattr(self, f"std_{g}") for g, x in zip(self.groups, inputs)}
            return torch.softmax(logits_of(self.network(**named)).float(), dim=1)

    return Deployable().eval()


def _column(values: Sequence[float]) -> Any:
    import torch
    return torch.tensor([float(v) for v in values], dtype=torch.float32).view(1, -1, 1, 1)


def _example(card: Dict[str, Any], tile: int, batch: int) -> Sequence[Any]:
    """A seeded random batch per input group, in the graph's 0–1 input scale."""
    import torch
    g = torch.Generator().manual_seed(0)
    out = []
    for spec in card["inputs"].values():
        mean = _column(spec["mean"]) / DEEPNESS_SCALE
        std = _column(spec["std"]) / DEEPNESS_SCALE
        out.append(mean + std * torch.randn(batch, len(spec["bands"]), tile, tile, generator=g))
    return out


def _trace(wrapper: Any, example: Sequence[Any], groups: Sequence[str], opset: int,
           dynamic_size: bool, arch: str) -> bytes:
    """The ONNX bytes of ``wrapper`` (torch's TorchScript-based exporter: no extra packages)."""
    import torch
    axes = {0: "batch", 2: "size", 3: "size"} if dynamic_size else {0: "batch"}
    buffer = io.BytesIO()
    try:
        # the exporter prints its whole IR on failure and warns on every trace: not actionable
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, tuple(example), buffer, dynamo=False,
                              opset_version=opset, input_names=list(groups),
                              output_names=[OUTPUT_NAME],
                              dynamic_axes={**{g: axes for g in groups}, OUTPUT_NAME: axes})
    except Exception as exc:  # unsupported operator, data-dependent control flow, …
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelFileError(f"{arch} cannot be exported to ONNX: torch's exporter stopped at "
                             f"'{first[:200]}'") from None
    return buffer.getvalue()


def _max_difference(wrapper: Any, data: bytes, example: Sequence[Any]) -> float:
    """Max |Δprobability| of onnxruntime against torch on ``example``."""
    import torch

    from ...compute.onnx_runtime import onnxruntime
    ort = onnxruntime()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    got = session.run([OUTPUT_NAME], {n: x.numpy() for n, x in zip(names, example)})[0]
    with torch.no_grad():
        want = wrapper(*example).numpy()
    return float(np.abs(got - want).max())


def _input_multiple(arch: str) -> int:
    from ...models import architecture
    return int(architecture(arch).input_multiple)


def _notes(card: Dict[str, Any]) -> list:
    """What consumers other than RS Seg should know about the exported file."""
    notes = []
    if card["task"] != "segmentation" or list(card["inputs"]) != ["image"]:
        notes.append(f"the graph takes {len(card['inputs'])} inputs "
                     f"({', '.join(card['inputs'])}); Deepness runs single-input segmentation "
                     f"models only, so it carries no Deepness metadata")
    for g, spec in card["inputs"].items():
        mode = spec.get("normalisation", "dataset")
        if mode != "dataset":
            notes.append(f"input {g} normalises each image with its own statistics ({mode}); "
                         f"RS Seg applies that before the graph, other runtimes will not")
    return notes


def summary_line(result: Dict[str, Any]) -> str:
    """One line describing an export result."""
    axes = "batch, size" if result["dynamic_size"] else f"batch (size fixed at {result['tile']})"
    return (f"wrote {result['output']} ({result['architecture']}, {result['task']}, inputs "
            f"{', '.join(result['inputs'])}, opset {result['opset']}, dynamic {axes}); "
            f"onnxruntime vs torch max |Δp| {result['max_abs_diff']:.1e}")

