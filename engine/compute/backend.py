"""Array backend of the inference pipeline: torch tensors when torch is installed, else numpy.

ONNX models run through onnxruntime, so segmenting with them must not need torch.  The pipeline
(reader, stitcher, block conversion) is written once against the few operations below; each one
dispatches on the array it is given, and only the functions that create arrays take a device.
Without torch every array is a numpy array on the host.
"""
from __future__ import annotations

import contextlib
import importlib
from typing import Any, ContextManager, Optional, Sequence

import numpy as np

_TORCH: Any = None
_CHECKED = False


def torch_module() -> Optional[Any]:
    """The torch module, or None when it is not installed (checked once)."""
    global _TORCH, _CHECKED
    if not _CHECKED:
        try:
            _TORCH = importlib.import_module("torch")
        except ImportError:
            _TORCH = None
        _CHECKED = True
    return _TORCH


def is_tensor(a: Any) -> bool:
    """True for a torch tensor (never imports torch to find out)."""
    return type(a).__module__.startswith("torch")


def _torch_device(device: Any) -> bool:
    torch = torch_module()
    return torch is not None and isinstance(device, torch.device)


def zeros(shape: Sequence[int], device: Any = None, dtype: str = "float32") -> Any:
    """Zeros of ``dtype`` ('float32' or 'bool'): a tensor on a torch device, else numpy."""
    if _torch_device(device):
        torch = torch_module()
        return torch.zeros(tuple(shape), dtype=getattr(torch, dtype), device=device)
    return np.zeros(tuple(shape), dtype=dtype)


def asarray(values: Any, device: Any = None, dtype: str = "float32") -> Any:
    """``values`` as an array of ``dtype`` on ``device`` (numpy unless it is a torch device)."""
    if _torch_device(device):
        torch = torch_module()
        return torch.as_tensor(np.asarray(values), dtype=getattr(torch, dtype)).to(device)
    return np.asarray(values, dtype=dtype)


def from_numpy(a: np.ndarray) -> Any:
    """A host array for the pipeline: a zero-copy tensor with torch, the array itself without."""
    torch = torch_module()
    return torch.from_numpy(a) if torch is not None else a


def to_device(a: Any, device: Any, channels_last: bool = False) -> Any:
    """Move a batch to ``device`` (non-blocking; channels-last when asked); numpy stays put."""
    if not is_tensor(a):
        return a
    a = a.to(device, non_blocking=True)
    if channels_last:
        a = a.contiguous(memory_format=torch_module().channels_last)
    return a


def to_numpy(a: Any) -> np.ndarray:
    """A numpy array of ``a`` (copied to the host when it is a device tensor)."""
    return a.detach().cpu().numpy() if is_tensor(a) else np.asarray(a)


def as_float32(a: Any) -> Any:
    """``a`` in float32 (no copy when it already is)."""
    return a.float() if is_tensor(a) else a.astype(np.float32, copy=False)


def to_uint8(a: Any) -> Any:
    """``a`` rounded half to even and cast to uint8 (values must lie in 0..255)."""
    if is_tensor(a):
        return a.round().to(torch_module().uint8)
    return np.rint(a).astype(np.uint8)


def to_dtype(a: Any, dtype: str) -> Any:
    """``a`` cast to the numpy-named ``dtype`` ('uint8', 'int64', 'float32', …)."""
    if is_tensor(a):
        return a.to(getattr(torch_module(), dtype))
    return a.astype(dtype)


def concat(arrays: Sequence[Any], axis: int = 0) -> Any:
    """Concatenate arrays of one backend along ``axis``."""
    if is_tensor(arrays[0]):
        return torch_module().cat(list(arrays), dim=axis)
    return np.concatenate(arrays, axis=axis)


def where(condition: Any, a: Any, b: Any) -> Any:
    """Elementwise ``a`` where ``condition`` else ``b``."""
    if is_tensor(condition):
        return torch_module().where(condition, a, b)
    return np.where(condition, a, b)


def zeros_like(a: Any) -> Any:
    """Zeros of the shape, dtype and device of ``a``."""
    return torch_module().zeros_like(a) if is_tensor(a) else np.zeros_like(a)


def argmax0(scores: Any) -> Any:
    """Index of the largest value along the first axis (the class axis of C×H×W scores); ties
    give the first, as ``argmax`` does."""
    if is_tensor(scores):
        # torch's CPU argmax over a strided leading axis is 4-10x slower than max's indices
        # (50 vs 12 ms for 6×512² on 2 threads), and the stitcher calls this on every block
        return scores.max(0).indices
    return np.argmax(scores, axis=0)


def bincount(a: Any, minlength: int) -> Any:
    """Counts of the non-negative integers in ``a`` (at least ``minlength``), on its device."""
    if is_tensor(a):
        return torch_module().bincount(a, minlength=minlength)
    return np.bincount(np.asarray(a, dtype=np.int64).ravel(), minlength=minlength)


def inference_context(device: Any) -> ContextManager[Any]:
    """torch's inference mode for torch devices; nothing for numpy."""
    if not _torch_device(device):
        return contextlib.nullcontext()
    return torch_module().inference_mode()


def autocast_context(device: Any) -> ContextManager[Any]:
    """Mixed precision around the network on CUDA; nothing elsewhere."""
    if not _torch_device(device):
        return contextlib.nullcontext()
    dtype = amp_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch_module().autocast(device.type, dtype=dtype)


def amp_dtype(device: Any) -> Any:
    """Mixed-precision dtype (a torch dtype) for inference on ``device`` (None on CPU)."""
    torch = torch_module()
    if torch is None or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16



def logits_of(output: Any) -> Any:
    """The main logits of a network output (a tensor, or a dict with ``logits``)."""
    return output["logits"] if isinstance(output, dict) else output
