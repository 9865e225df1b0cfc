"""Dependency checks: what the engine needs and the exact command that installs it.

Nothing here imports torch at module level: the plugin must load (and explain) without it.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

# The pins the installer installs; tests keep them equal to requirements.txt.
TORCH_VERSION = "2.13.0"
TORCH_PIN = f"torch=={TORCH_VERSION}"
ONNXRUNTIME_VERSION = "1.32.0"
SAFETENSORS_PIN = "safetensors==0.8.0"
# A torch/onnxruntime outside its pinned minor release is refused: (name, pinned version).
PINNED_RUNTIMES = (("torch", TORCH_VERSION), ("onnxruntime", ONNXRUNTIME_VERSION))
INSTALL_BUTTON = "Plugins ▸ RS Seg ▸ Install dependencies…"
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


@dataclass(frozen=True)
class Environment:
    """What this QGIS can run, the one state every RS Seg message is derived from.

    ``inference`` (onnxruntime, no torch) is a complete state: ONNX models segment, click and
    detect change.  Training, CVA and ``.rsmodel`` files need torch, and only the places that
    offer them say so.
    """

    torch: bool
    onnxruntime: bool

    @property
    def state(self) -> str:
        """'full' (torch), 'inference' (onnxruntime only) or 'none'."""
        return "full" if self.torch else "inference" if self.onnxruntime else "none"

    @property
    def summary(self) -> str:
        """One sentence for the dock, the diagnostics and the log."""
        if self.state == "full":
            return "Everything RS Seg offers is available (torch" + \
                (" and onnxruntime)." if self.onnxruntime else ").")
        if self.state == "inference":
            return ("Inference only (onnxruntime): ONNX models segment, click and detect "
                    "change. Training, change vector analysis and .rsmodel files need torch: "
                    f"{INSTALL_BUTTON} ▸ CPU training.")
        return (f"Neither torch nor onnxruntime is installed: nothing can run yet. "
                f"{INSTALL_BUTTON} (Inference only is enough for ONNX models).")


def _usable(name: str) -> bool:
    return importlib.util.find_spec(name) is not None and version_problem(name) is None


def environment() -> Environment:
    """The current :class:`Environment` (import caches refreshed: an install just made
    counts)."""
    importlib.invalidate_caches()
    return Environment(torch=_usable("torch"), onnxruntime=_usable("onnxruntime"))


def missing_modules() -> List[str]:
    """Python modules the engine needs that this QGIS Python cannot import (a torch outside
    the pinned release counts as missing: it is refused, see :func:`version_problem`)."""
    return [m for m in ("torch", "safetensors", "rasterio", "numpy")
            if importlib.util.find_spec(m) is None or version_problem(m)]


def installed_version(name: str) -> Optional[str]:
    """The version of distribution ``name`` that imports first (read without importing it)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def version_problem(name: str) -> Optional[str]:
    """A sentence when an installed torch/onnxruntime is outside its pinned minor release.

    Only the release counts (``2.13.0+cu128`` is fine for the pin 2.13.0): another minor
    release may change operators or the model-file loader under the engine.
    """
    pinned = dict(PINNED_RUNTIMES).get(name)
    version = installed_version(name) if pinned else None
    if version is None:
        return None
    if version.split("+")[0].split(".")[:2] == pinned.split(".")[:2]:
        return None
    spec = importlib.util.find_spec(name)
    where = f" at {Path(spec.origin).parent}" if spec is not None and spec.origin else ""
    return (f"{name} {version}{where} is not the supported {name} "
            f"{'.'.join(pinned.split('.')[:2])}.x; install {name}=={pinned} with "
            f"{INSTALL_BUTTON} (it goes into RS Seg's own folder, ahead of this copy)")


def python_command() -> str:
    """The interpreter behind QGIS's Python (the one that must run pip for it).

    Inside QGIS ``sys.executable`` is QGIS itself, or whatever ``python3`` comes first on PATH
    (measured: desktop QGIS on Debian reports a pyenv shim, another Python).  So it is
    trusted only when it lives in this Python's own prefix (a venv's ``bin/python``);
    otherwise the python binary of the same installation is used: ``<prefix>/bin/python3.X``
    on Linux/macOS (Debian: /usr/bin/python3.11), ``<prefix>/python.exe`` in OSGeo4W.
    """
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    exe = Path(sys.executable or "")
    prefixes = [Path(p) for p in dict.fromkeys((sys.prefix, sys.exec_prefix,
                                                sys.base_prefix, sys.base_exec_prefix))]
    if exe.name.lower().startswith("python") and exe.is_file() and \
            any(exe.parent in (prefix, prefix / "bin", prefix / "Scripts") for prefix in prefixes):
        return str(exe)
    for prefix in prefixes:
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
    """One sentence naming what is missing and the ways to fix it: the installer button for
    the pip packages (torch, safetensors), else the manual commands.

    ``driver_version`` (from nvidia-smi) picks the CUDA build; without it both builds are named.
    """
    pip_names = {"safetensors": SAFETENSORS_PIN}
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
    if parts:  # the installer handles exactly these; the manual commands stay for experts
        parts.insert(0, f"{INSTALL_BUTTON} (into RS Seg's own folder), or by hand:")
    apt = [apt_names[m] for m in missing if m in apt_names]
    if apt:
        parts.append(f"apt install {' '.join(apt)} (use the system packages, not pip)")
    refused = [p for p in (version_problem(m) for m in missing) if p]
    return "".join(f"{p}. " for p in refused) + (
        f"RS Seg needs {', '.join(missing)} in QGIS's Python. Install with "
        + (parts[0] + " " + "; ".join(parts[1:]) if parts and parts[0].endswith(":")
           else "; ".join(parts)))


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


@dataclass(frozen=True)
class NvidiaGpu:
    """One GPU as nvidia-smi reports it (no torch needed)."""

    index: int
    name: str
    memory_gib: float
    driver: str


def nvidia_gpus() -> List[NvidiaGpu]:
    """GPUs, memory and driver from ``nvidia-smi`` (empty without an NVIDIA driver)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    query = "--query-gpu=index,name,memory.total,driver_version"
    try:
        out = subprocess.run([smi, query, "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 4 and fields[0].isdigit():
            try:
                memory = float(fields[2]) / 1024
            except ValueError:
                memory = 0.0
            gpus.append(NvidiaGpu(int(fields[0]), fields[1], memory, fields[3]))
    return gpus


def min_driver(cuda_version: str) -> Optional[float]:
    """The oldest NVIDIA driver that runs torch's CUDA build ``12.8`` (None when unknown)."""
    tag = "cu" + cuda_version.replace(".", "")
    return next((driver for driver, flavour in CUDA_WHEELS if flavour == tag), None)


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
