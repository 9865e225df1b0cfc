"""Compute device selection with user-facing errors instead of CUDA stack traces."""
from __future__ import annotations

import torch

from .jobs import DeviceError


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turn 'auto', 'cpu', 'cuda' or 'cuda:N' into a usable device, or explain why not."""
    text = str(spec or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "gpu":
        text = "cuda"
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


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed-precision dtype for inference on ``device`` (None on CPU)."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
