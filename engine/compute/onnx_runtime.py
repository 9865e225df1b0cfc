"""onnxruntime sessions: import with an install hint, providers for a device, clear errors.

RS Seg never registers custom-op libraries (``SessionOptions.register_custom_ops_library`` loads
native code from a path); graphs that need one are refused before a session is made
(:func:`engine.formats.onnx.graph.check_operators`).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List, Optional, Tuple

from ..jobs import EngineError, ModelFileError, ctrl_c_held
from .threads import plan_threads

# Pinned in requirements.txt; the install hint names the same versions.
ONNXRUNTIME_PIN = "onnxruntime==1.32.0"
ONNX_PIN = "onnx==1.23.2"


class MissingPackageError(EngineError):
    """A Python package needed for ONNX models is not installed; the message has the command."""


def install_command(*packages: str) -> str:
    """The pip command that installs ``packages`` into the running interpreter."""
    return f"{sys.executable} -m pip install {' '.join(packages)}"


def require(module: str, pin: str, purpose: str) -> Any:
    """Import ``module`` or raise :class:`MissingPackageError` with the pip command."""
    import importlib
    try:
        with ctrl_c_held():
            return importlib.import_module(module)
    except ImportError:
        raise MissingPackageError(
            f"{purpose} needs the Python package '{module}', which is not installed; install it "
            f"with: {install_command(pin)}") from None


def onnxruntime() -> Any:
    """The onnxruntime module, or a :class:`MissingPackageError` naming the install command."""
    return require("onnxruntime", ONNXRUNTIME_PIN, "running ONNX models")


def cuda_available() -> bool:
    """True when the installed onnxruntime has its CUDA execution provider."""
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def providers_for(device: Any) -> List[Any]:
    """Execution providers for ``device`` (anything with ``type``/``index``): CUDA first on a GPU
    when onnxruntime has it, the CPU always as the fallback for unsupported operators."""
    if getattr(device, "type", "cpu") == "cuda" and cuda_available():
        return [("CUDAExecutionProvider", {"device_id": int(device.index or 0)}),
                "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def open_session(path: Path, model_bytes: Any, device: Any,
                 threads: Optional[int] = None) -> Tuple[Any, List[str]]:
    """An inference session for the (already checked) graph ``model_bytes`` (bytes or a file
    name) on ``device``, with ``threads`` intra-op threads (default: the usable cores,
    :mod:`engine.compute.threads`).

    Returns the session and the providers it actually uses.
    """
    ort = onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or plan_threads().intra_op
    # The CPU arena keeps every block it ever grew to (doubling); without it a 1024² U-Net run
    # peaks 0.4 GB lower for no measurable time on this 2-core box (docs/benchmarks.md).
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 3  # errors only: warnings about unused initialisers are noise
    try:
        session = ort.InferenceSession(model_bytes, sess_options=options,
                                       providers=providers_for(device))
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelFileError(f"onnxruntime cannot run {path.name} ({first[:300]}); the file is "
                             f"damaged or uses operators this onnxruntime lacks — re-export it "
                             f"with opset 17 or newer, or update onnxruntime") from None
    return session, list(session.get_providers())
