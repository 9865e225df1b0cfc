"""Read a local weight file into ``{name: tensor}``: PyTorch ``.pth``/``.pt`` (weights-only
unpickling), ``.safetensors`` or NumPy ``.npz``.

The container is recognised from its first bytes, never from the file name (users rename
downloads).  Nothing is downloaded and no code from the file ever runs: pickles are read with
``torch.load(weights_only=True)``, whose refusal of anything but tensors and plain containers
becomes a sentence, and ``.npz`` files are read with ``allow_pickle=False``.
"""
from __future__ import annotations

import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping

import numpy as np
import torch

from ..jobs import InputError, ModelFileError

#: Wrapper keys under which training scripts nest the actual state dict.
_WRAPPERS = ("state_dict", "model", "module", "teacher", "network", "net")


@dataclass
class WeightFile:
    """The tensors of one weight file and the container they came from."""

    path: Path
    container: str                      # "pytorch", "safetensors" or "npz"
    tensors: Dict[str, torch.Tensor]


def _container(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(9)
    if len(head) < 9:
        raise ModelFileError(f"{path} is empty or truncated ({path.stat().st_size} bytes); "
                             f"download the weight file again")
    if head[:4] == b"PK\x03\x04":
        return _zip_kind(path)
    if head[0] == 0x80:                 # a pickle protocol marker: legacy torch.save format
        return "pytorch"
    (n,) = struct.unpack("<Q", head[:8])
    if head[8:9] == b"{" and 0 < n < path.stat().st_size:
        return "safetensors"
    raise ModelFileError(f"{path} is not a PyTorch, safetensors or .npz weight file; give the "
                         f"checkpoint as published (.pth, .safetensors or .npz)")


def _zip_kind(path: Path) -> str:
    """torch.save's zip format and .npz are both zip archives: tell them apart by member names."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except zipfile.BadZipFile:
        raise ModelFileError(f"{path} is truncated or damaged (its zip directory is missing); "
                             f"download the weight file again") from None
    if any(n.endswith("data.pkl") for n in names):
        return "pytorch"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    raise ModelFileError(f"{path} is a zip archive but neither a PyTorch checkpoint nor an .npz "
                         f"array file; give the checkpoint as published")


def _read_pytorch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights only" in str(exc).lower() or "weights_only" in str(exc).lower():
            raise ModelFileError(
                f"{path} was refused: it holds pickled Python objects other than tensors "
                f"(possibly code), which are never executed here ({first[:160]}); load it in a "
                f"trusted Python session and re-save its state_dict with torch.save or as "
                f".safetensors") from None
        raise ModelFileError(f"{path} is truncated or damaged ({first[:160]}); download the "
                             f"weight file again") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path} is truncated or damaged ({first[:160]}); download the "
                             f"weight file again") from None


def _read_safetensors(path: Path) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:            # safetensors raises its own error type for bad headers
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path} is truncated or damaged ({first[:160]}); download the "
                             f"weight file again") from None


def _read_npz(path: Path) -> Dict[str, torch.Tensor]:
    out: Dict[str, torch.Tensor] = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                out[key] = torch.from_numpy(np.ascontiguousarray(data[key]))
    except ValueError as exc:           # object arrays need pickle: refused
        raise ModelFileError(f"{path} was refused: it holds pickled Python objects ({exc}); "
                             f"give a plain numeric .npz") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelFileError(f"{path} is truncated or damaged ({exc}); download the weight file "
                             f"again") from None
    return out


def _unwrap(state: Any, path: Path) -> Dict[str, torch.Tensor]:
    """The tensor mapping inside a checkpoint (nested wrappers and a ``module.`` prefix removed;
    non-tensor entries such as an epoch counter dropped)."""
    for _ in range(3):
        if not isinstance(state, Mapping):
            break
        inner = next((state[k] for k in _WRAPPERS if isinstance(state.get(k), Mapping)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, Mapping):
        raise ModelFileError(f"{path} does not hold a state dict (a mapping of names to "
                             f"tensors); give the checkpoint's state dict")
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelFileError(f"{path} holds no tensors; give a weight file")
    if all(k.startswith("module.") for k in tensors):        # saved from DataParallel/DDP
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def read_weights(path: str | Path) -> WeightFile:
    """Read a local weight file (container recognised from its bytes); raise a sentence on a
    missing, truncated, unsafe or foreign file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"weight file {p} does not exist; give the path of a downloaded "
                         f"checkpoint (nothing is downloaded by this tool)")
    kind = _container(p)
    if kind == "npz":
        return WeightFile(p, kind, _read_npz(p))
    raw = _read_safetensors(p) if kind == "safetensors" else _read_pytorch(p)
    return WeightFile(p, kind, _unwrap(raw, p))
