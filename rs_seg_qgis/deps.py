"""Dependency checks: what the engine needs and the exact command that installs it.

Nothing here imports torch at module level: the plugin must load (and explain) without it.
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

TORCH_PIN = "torch==2.13.0"
TORCH_INDEX = "https://download.pytorch.org/whl"
# Newest CUDA wheel flavour each NVIDIA driver generation can run (driver >= key).
CUDA_WHEELS = [(580.0, "cu130"), (570.0, "cu128"), (560.0, "cu126")]
DEFAULT_CUDA_WHEEL = "cu128"


@dataclass(frozen=True)
class Gpu:
    """One GPU as torch (or nvidia-smi) sees it."""

    index: int
    name: str
    memory_gib: float

    @property
    def device(self) -> str:
        return f"cuda:{self.index}"

    @property
    def label(self) -> str:
        """'cuda:0 NVIDIA RTX A4000 (16.0 GiB)', as the device combos show it."""
        return f"{self.device} {self.name} ({self.memory_gib:.1f} GiB)"


def missing_modules() -> List[str]:
    """Python modules the engine needs that this QGIS Python cannot import."""
    return [m for m in ("torch", "safetensors", "rasterio", "numpy")
            if importlib.util.find_spec(m) is None]


def python_command() -> str:
    """The interpreter behind QGIS's Python.

    Inside the desktop application ``sys.executable`` is QGIS itself, so look for the python
    binary of the same installation (``bin/python3.X`` on Linux/macOS, ``python.exe`` in
    OSGeo4W), else fall back to ``python3``.
    """
    exe = Path(sys.executable or "")
    if exe.name.lower().startswith("python"):
        return str(exe)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    prefix = Path(sys.exec_prefix)
    for candidate in (prefix / "bin" / version, prefix / "bin" / "python3",
                      prefix / "python.exe", prefix / "python3.exe"):
        if candidate.is_file():
            return str(candidate)
    return shutil.which(version) or "python3"


def cuda_wheel(driver_version: Optional[str]) -> str:
    """The PyTorch CUDA wheel flavour (``cu128`` …) an NVIDIA driver version can run."""
    try:
        major = float(".".join(str(driver_version).split(".")[:2]))
    except ValueError:
        return DEFAULT_CUDA_WHEEL
    for minimum, tag in CUDA_WHEELS:
        if major >= minimum:
            return tag
    return CUDA_WHEELS[-1][1]


def torch_install_command(cuda: Optional[str] = None) -> str:
    """``python -m pip install torch==2.13.0 --index-url …/cpu`` (or the ``cuda`` flavour)."""
    return (f"{python_command()} -m pip install {TORCH_PIN} "
            f"--index-url {TORCH_INDEX}/{cuda or 'cpu'}")


def install_hint(missing: List[str], driver_version: Optional[str] = None) -> str:
    """One sentence naming what is missing and the commands that fix it.

    ``driver_version`` (from nvidia-smi) picks the CUDA build; without it both builds are named.
    """
    pip_names = {"safetensors": "safetensors==0.8.0"}
    apt_names = {"rasterio": "python3-rasterio", "numpy": "python3-numpy"}
    parts = []
    if "torch" in missing:
        if driver_version:
            parts.append(f"{torch_install_command(cuda_wheel(driver_version))} (CUDA build for "
                         f"NVIDIA driver {driver_version})")
        else:
            parts.append(f"{torch_install_command()} (CPU build; for an NVIDIA GPU use "
                         f"--index-url {TORCH_INDEX}/{DEFAULT_CUDA_WHEEL}, or the cuXXX "
                         f"flavour your driver supports)")
    pip = [pip_names[m] for m in missing if m in pip_names]
    if pip:
        parts.append(f"{python_command()} -m pip install {' '.join(pip)}")
    apt = [apt_names[m] for m in missing if m in apt_names]
    if apt:
        parts.append(f"apt install {' '.join(apt)} (use the system packages, not pip)")
    return (f"RS Seg needs {', '.join(missing)} in QGIS's Python. Install with: "
            + "; ".join(parts))


def nvidia_driver() -> Optional[str]:
    """The NVIDIA driver version from ``nvidia-smi`` (None without a driver)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    return lines[0] if lines else None


def torch_gpus() -> List[Gpu]:
    """CUDA GPUs torch can use (empty without torch or CUDA).

    torch is imported here, lazily: only the device list and the diagnostics need it.
    """
    if importlib.util.find_spec("torch") is None:
        return []
    try:
        import torch
        if not torch.cuda.is_available():
            return []
        return [Gpu(i, torch.cuda.get_device_name(i),
                    torch.cuda.get_device_properties(i).total_memory / 2 ** 30)
                for i in range(torch.cuda.device_count())]
    except Exception:  # a broken CUDA setup must not break the dock; diagnostics says more
        return []
