"""Compute device selection with user-facing errors instead of CUDA stack traces.

With torch installed a device is a ``torch.device``.  Without torch (ONNX models through
onnxruntime) it is a :class:`Device` with the same ``type``/``index``; CUDA then means
onnxruntime's CUDA execution provider.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from .backend import torch_module
from ..jobs import DeviceError


@dataclass(frozen=True)
class Device:
    """A compute device when torch is absent: ``type`` 'cpu' or 'cuda', optional ``index``."""

    type: str
    index: Optional[int] = None

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"


def resolve_device(spec: Any = "auto") -> Any:
    """Turn 'auto', 'cpu', 'cuda' or 'cuda:N' into a usable device, or explain why not."""
    torch = torch_module()
    text = str(spec or "auto").strip().lower()
    if text == "gpu":
        text = "cuda"
    if torch is None:
        return _resolve_without_torch(text, spec)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device '{spec}' was requested but CUDA is not available here (torch "
                f"{torch.__version__}, no usable NVIDIA GPU/driver); use --device cpu or auto")
        try:
            device = torch.device(text)
        except RuntimeError:
            raise DeviceError(f"'{spec}' is not a device; use auto, cpu, cuda or cuda:N") from None
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(f"device '{spec}' does not exist: this machine has {count} GPU(s) "
                              f"(cuda:0..cuda:{count - 1})")
        return device
    raise DeviceError(f"'{spec}' is not a device; use auto, cpu, cuda or cuda:N")


def _resolve_without_torch(text: str, spec: Any) -> Device:
    """Devices onnxruntime can serve: the CPU, or CUDA through its CUDA execution provider."""
    from .onnx_runtime import cuda_available
    if text == "auto":
        return Device("cuda" if cuda_available() else "cpu")
    if text == "cpu":
        return Device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        index = text.partition(":")[2]
        if index and not index.isdigit():
            raise DeviceError(f"'{spec}' is not a device; use auto, cpu, cuda or cuda:N")
        if not cuda_available():
            raise DeviceError(f"device '{spec}' was requested but neither torch nor onnxruntime's "
                              f"CUDA execution provider is available here; use --device cpu or "
                              f"auto, or install onnxruntime-gpu")
        return Device("cuda", int(index) if index else None)
    raise DeviceError(f"'{spec}' is not a device; use auto, cpu, cuda or cuda:N")

