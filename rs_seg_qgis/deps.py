"""Dependency checks: what the engine needs and the exact command that installs it."""
from __future__ import annotations

import importlib.util
import sys
from typing import List

TORCH_PIN = "torch==2.13.0"


def missing_modules() -> List[str]:
    """Python modules the engine needs that this QGIS Python cannot import."""
    return [m for m in ("torch", "safetensors", "rasterio", "numpy")
            if importlib.util.find_spec(m) is None]


def install_hint(missing: List[str]) -> str:
    """One sentence naming what is missing and the command that fixes it."""
    pip_names = {"torch": TORCH_PIN, "safetensors": "safetensors==0.8.0"}
    apt_names = {"rasterio": "python3-rasterio", "numpy": "python3-numpy"}
    pip = [pip_names[m] for m in missing if m in pip_names]
    apt = [apt_names[m] for m in missing if m in apt_names]
    parts = []
    if pip:
        parts.append(f"{sys.executable or 'python3'} -m pip install {' '.join(pip)} "
                     f"(CPU build; for an NVIDIA GPU add --index-url for the CUDA build of "
                     f"{TORCH_PIN})")
    if apt:
        parts.append(f"apt install {' '.join(apt)} (use the system packages, not pip)")
    return (f"RS Seg needs {', '.join(missing)} in QGIS's Python. Install with: "
            + "; ".join(parts))
