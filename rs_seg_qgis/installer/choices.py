"""What the installer offers: inference only, CPU training, GPU; pinned, with download sizes."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import List, Optional, Tuple

from .. import deps

TORCH_INDEX = deps.TORCH_INDEX
ONNXRUNTIME_PIN = f"onnxruntime=={deps.ONNXRUNTIME_VERSION}"
# How the GPU label names each CUDA wheel flavour.
CUDA_NAMES = {"cu130": "CUDA 13.0", "cu128": "CUDA 12.8", "cu126": "CUDA 12.6"}


@dataclass(frozen=True)
class Choice:
    """One install option: pinned requirements, the extra wheel index and how to check it."""

    key: str
    label: str
    requirements: Tuple[str, ...]
    extra_index_url: str = ""
    imports: Tuple[str, ...] = ()  # must import from the new folder before it goes live
    available: bool = True
    reason: str = ""  # why it is not available


def _torch(flavour: str) -> str:
    # PyPI's Linux torch is a CUDA build and macOS has no local-version tags: pin the exact
    # build so the resolver cannot pick another flavour from a second index
    if sys.platform == "darwin":
        return deps.TORCH_PIN
    return f"{deps.TORCH_PIN}+{flavour}"


def choices(driver: Optional[str] = None) -> List[Choice]:
    """The three choices; ``driver`` (nvidia-smi's driver version) picks the CUDA build."""
    inference = Choice(
        "inference", "Inference only (onnxruntime, ~30 MB): run ONNX models, no training",
        (ONNXRUNTIME_PIN, deps.SAFETENSORS_PIN), imports=("onnxruntime",))
    cpu_index = "" if sys.platform == "darwin" else f"{TORCH_INDEX}/cpu"
    cpu = Choice(
        "cpu", "CPU training (torch CPU, ~200 MB download, ~1 GB on disk)",
        (_torch("cpu"), deps.SAFETENSORS_PIN, ONNXRUNTIME_PIN), cpu_index,
        imports=("torch", "safetensors", "onnxruntime"))
    flavour = deps.cuda_wheel(driver) if driver else deps.DEFAULT_CUDA_WHEEL
    if driver and sys.platform != "darwin":
        gpu = Choice(
            "gpu", f"GPU (torch {CUDA_NAMES.get(flavour, flavour)} build for NVIDIA driver "
                   f"{driver}, ~3 GB download)",
            (_torch(flavour), deps.SAFETENSORS_PIN, ONNXRUNTIME_PIN),
            f"{TORCH_INDEX}/{flavour}", imports=("torch", "safetensors", "onnxruntime"))
    else:
        gpu = Choice("gpu", "GPU (torch CUDA build, ~3 GB download)", (), available=False,
                     reason="no NVIDIA driver found (nvidia-smi is missing or reports no GPU)"
                     if sys.platform != "darwin" else "macOS has no CUDA build of torch")
    return [inference, cpu, gpu]


def by_key(key: str, driver: Optional[str] = None) -> Choice:
    """The choice named ``key`` (``inference``, ``cpu``, ``gpu``)."""
    for choice in choices(driver):
        if choice.key == key:
            return choice
    raise KeyError(key)
