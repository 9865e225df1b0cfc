"""Tiny ONNX graphs made by exporting small torch modules, in the forms found in the wild
(Deepness's test models: softmax / sigmoid heads, B×H×W maps, two outputs, fixed batch 1,
outputs cropped by valid convolutions), with or without Deepness metadata."""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import onnx
import pytest
import torch

from tests.conftest import write_raster


class Head(torch.nn.Module):
    """A 1×1 conv, or an unpadded (2·crop+1)² conv (output cropped by ``crop`` per side), with a
    chosen final activation and output layout."""

    def __init__(self, bands: int = 3, channels: int = 4, activation: str = "softmax",
                 crop: int = 0, squeeze: bool = False, two_outputs: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        # pointwise (1×1) unless cropping: sliding windows then reproduce the whole image exactly
        self.conv = torch.nn.Conv2d(bands, channels, 2 * crop + 1)
        self.activation, self.squeeze, self.two = activation, squeeze, two_outputs

    def forward(self, x: torch.Tensor):
        y = self.conv(x * 4.0 - 2.0)
        if self.activation == "softmax":
            y = torch.softmax(y, dim=1)
        elif self.activation == "sigmoid":
            y = torch.sigmoid(y)
        elif self.activation == "clamp":  # probabilities, but not from a Sigmoid node
            y = (y * 0.1 + 0.5).clamp(0, 1)
        if self.squeeze:
            y = y[:, 0]
        return (y, y.mean(dim=1, keepdim=True)) if self.two else y


class Classifier(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


class Detector(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        return x.reshape(b, -1)[:, :600].reshape(b, 100, 6)


def export(module: torch.nn.Module, path: Path, size: int = 64, bands: int = 3,
           batch: Optional[int] = None, dynamic_size: bool = False,
           metadata: Optional[Dict[str, object]] = None, outputs: Sequence[str] = ("out",),
           inputs: Sequence[str] = ("input",)) -> Path:
    """``module`` as an ONNX file (opset 17); ``batch`` None → dynamic batch; metadata values
    are JSON-encoded as Deepness expects."""
    example = tuple(torch.rand(batch or 2, bands, size, size) for _ in inputs)
    axes = {}
    if batch is None:
        axes[0] = "batch"
    if dynamic_size:
        axes.update({2: "h", 3: "w"})
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), example, buffer, dynamo=False, opset_version=17,
                          input_names=list(inputs), output_names=list(outputs),
                          dynamic_axes={n: axes for n in (*inputs, *outputs)} if axes else None)
    model = onnx.load_from_string(buffer.getvalue())
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(model, str(path))
    return path


def deepness(classes: Sequence[str], **extra: object) -> Dict[str, object]:
    """Deepness metadata for a segmentor with ``classes`` (small-segment filter off unless
    ``extra`` says otherwise: the test rasters are noise, which a median filter rewrites)."""
    return {"model_type": "Segmentor", "class_names": {i: n for i, n in enumerate(classes)},
            "seg_small_segment": 0, **extra}


@pytest.fixture
def rgb(tmp_path: Path) -> Path:
    """A 3-band uint8 150×130 raster."""
    rng = np.random.default_rng(3)
    return write_raster(tmp_path / "rgb.tif", rng.integers(0, 255, (3, 150, 130), dtype=np.uint8))
