"""SAM's mask post-processing as a tiny onnxruntime graph: low-resolution logits → a window mask.

SAM up-samples the chosen 256² logits bilinearly to the 1024² model frame, crops the resized
window, up-samples that to the window and thresholds at 0.  For a 1024² window torch's
``interpolate`` spends 4–5× the CPU time of onnxruntime's ``Resize`` on this (one channel, a
million pixels; docs/benchmarks.md), a third of a click's decode, so the decode that runs
through onnxruntime post-processes there too.  The graph is built here (no weights, nothing to
cache): Resize → Slice → Resize → Greater, all sizes as inputs.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Tuple

import numpy as np

from ..compute.devices import Device
from ..compute.onnx_runtime import ONNX_PIN, open_session, require

INPUTS = ("logits", "frame", "crop", "size")


def upsampling_graph() -> bytes:
    """The ONNX bytes: ``logits`` 1×1×H×W, ``frame`` (1, 1, rows, cols) of the first resize,
    ``crop`` (rows, cols) kept of it, ``size`` (1, 1, rows, cols) of the mask → bool ``mask``."""
    onnx = require("onnx", ONNX_PIN, "SAM's mask up-sampling through onnxruntime")
    helper, tp = onnx.helper, onnx.TensorProto
    resize = dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel")
    nodes = [
        helper.make_node("Resize", ["logits", "", "", "frame"], ["framed"], **resize),
        helper.make_node("Slice", ["framed", "zeros", "crop", "axes"], ["cropped"]),
        helper.make_node("Resize", ["cropped", "", "", "size"], ["resized"], **resize),
        helper.make_node("Greater", ["resized", "zero"], ["mask"]),
    ]
    graph = helper.make_graph(
        nodes, "sam_mask_upsampling",
        [helper.make_tensor_value_info("logits", tp.FLOAT, [1, 1, "h", "w"]),
         helper.make_tensor_value_info("frame", tp.INT64, [4]),
         helper.make_tensor_value_info("crop", tp.INT64, [2]),
         helper.make_tensor_value_info("size", tp.INT64, [4])],
        [helper.make_tensor_value_info("mask", tp.BOOL, [1, 1, "rows", "cols"])],
        initializer=[helper.make_tensor("zeros", tp.INT64, [2], [0, 0]),
                     helper.make_tensor("axes", tp.INT64, [2], [2, 3]),
                     helper.make_tensor("zero", tp.FLOAT, [], [0.0])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                             ir_version=8).SerializeToString()


class MaskUpsampler:
    """An onnxruntime session of :func:`upsampling_graph`."""

    def __init__(self, threads: int) -> None:
        self.session, _ = open_session(Path("sam-mask-upsampling.onnx"), upsampling_graph(),
                                       Device("cpu"), threads)

    def mask(self, logits: np.ndarray, frame: int, resized: Tuple[int, int],
             window: Tuple[int, int], shape: Optional[Tuple[int, int]] = None) -> np.ndarray:
        """The bool mask of low-resolution ``logits`` (S×S) of a window of size ``window``
        (h, w) resized to ``resized`` in the model's ``frame``², as SAM post-processes it; a
        ``shape`` smaller than the window (a preview) crops the logits themselves and resizes
        them to it in one step."""
        (h, w), (nh, nw) = shape or window, resized
        side = logits.shape[-1]
        if (h, w) != tuple(window):
            scale = side / frame
            first, crop = side, (math.ceil(nh * scale), math.ceil(nw * scale))
        else:
            first, crop = frame, (nh, nw)
        feeds: Any = {"logits": logits.reshape(1, 1, side, side).astype(np.float32, copy=False),
                      "frame": np.array([1, 1, first, first], np.int64),
                      "crop": np.array(crop, np.int64), "size": np.array([1, 1, h, w], np.int64)}
        return self.session.run(["mask"], feeds)[0][0, 0]
