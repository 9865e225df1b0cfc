"""The SAM decoder graph with int8 up-scaling: the hover preview's cheaper decode.

The two matrix products that stand for SAM's transposed convolutions
(:data:`engine.models.sam.prepared_decoder.UPSCALING_WEIGHTS`) are about a quarter of a decode; ONNX
Runtime's dynamic quantisation runs them with int8 weights (7-bit, as in
:mod:`engine.formats.onnx.quantize`: full-range weights overflow the 16-bit sums of CPUs
without VNNI) and per-call int8 activations (as SAM's own ONNX notebook quantises its
decoder).  The rest stays fp32: quantising every product cost more mask agreement for little
more speed (docs/benchmarks.md).  The masks agree with fp32 at IoU ≥ 0.98 on random weights (a
test); the click keeps fp32, the preview uses this.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from ..compute.onnx_runtime import ONNX_PIN, onnxruntime, require
from ..formats.onnx.quantize import quiet_quantizer
from ..formats.onnx.runtime_graph import store
from ..models.sam.prepared_decoder import UPSCALING_WEIGHTS


def quantize_decoder(fp32: Path, int8: Path) -> Path:
    """Write ``int8``: the fp32 decoder graph ``fp32`` with its up-scaling products in int8."""
    onnx = require("onnx", ONNX_PIN, "SAM's int8 preview decoder")
    onnxruntime()  # the install hint when it is missing
    from onnxruntime.quantization import QuantType, quantize_dynamic
    graph = onnx.load(str(fp32))
    nodes = [n.name for n in graph.graph.node
             if n.op_type == "MatMul" and set(n.input) & set(UPSCALING_WEIGHTS)]
    if len(nodes) != len(UPSCALING_WEIGHTS):
        raise ValueError(f"{fp32.name} is not a prepared SAM decoder graph (its up-scaling "
                         f"products were not found)")
    with tempfile.TemporaryDirectory() as tmp, quiet_quantizer():
        out = Path(tmp) / int8.name
        quantize_dynamic(str(fp32), str(out), nodes_to_quantize=nodes,
                         weight_type=QuantType.QInt8, reduce_range=True)
        return store(int8, out.read_bytes())
