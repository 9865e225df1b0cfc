"""Frozen DINOv2 ViTs from local checkpoint files (or a seeded random stand-in), with a strict
name and shape check and a content fingerprint of the file.

Released checkpoints come as plain state dicts; :func:`load_foundation` also unwraps the usual
training wrappers (``teacher``/``model``/``state_dict`` nesting, a ``backbone.`` prefix, chunked
``blocks.{chunk}.{i}`` numbering) before the strict check.  Only local files are read — there is no
download code in this module.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import torch

from ...jobs import InputError
from .config import ViTConfig, expected_shapes, guess_config, vit_config
from .frozen import FrozenViT
from .model import ViT, build_vit


def weights_fingerprint(path: str | Path, full: bool = False) -> str:
    """A content fingerprint of a weights file: SHA-256 of its size and first and last MiB (fast
    on multi-GB files), or of the whole file with ``full=True``."""
    p = Path(path)
    h = hashlib.sha256()
    size = p.stat().st_size
    h.update(str(size).encode())
    with p.open("rb") as f:
        if full:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                h.update(chunk)
        else:
            h.update(f.read(1 << 20))
            if size > 2 << 20:
                f.seek(size - (1 << 20))
                h.update(f.read(1 << 20))
    return ("sha256:" if full else "sha256-ends:") + h.hexdigest()


def read_state_dict(path: str | Path) -> Dict[str, torch.Tensor]:
    """Tensors of a local ``.pth``/``.pt`` (weights-only unpickling) or ``.safetensors`` file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"foundation weights {p} do not exist; give the path of a local DINOv2 "
                         f"checkpoint (e.g. dinov2_vitb14_reg4_pretrain.pth); nothing is "
                         f"downloaded")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:   # torch/safetensors raise several types for bad files
        raise InputError(f"{p} is not a readable weights file ({str(exc).splitlines()[0]}); "
                         f"give a DINOv2 .pth state dict or a .safetensors file") from None
    return _unwrap(state, p)


def _unwrap(state, path: Path) -> Dict[str, torch.Tensor]:
    for key in ("teacher", "model", "state_dict"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor)
                                                 for v in state.values()):
        raise InputError(f"{path} does not hold a plain state dict of tensors")
    state = dict(state)
    for prefix in ("backbone.", "module."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    # chunked blocks (blocks.{chunk}.{i}.…, training checkpoints with block_chunks > 0)
    if any(re.match(r"blocks\.\d+\.\d+\.", k) for k in state):
        state = {re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", k): v for k, v in state.items()}
    return state


def check_state_dict(state: Mapping[str, torch.Tensor], config: str | ViTConfig,
                     source: str = "the weights") -> None:
    """Strict name and shape check against ``config``; raises InputError listing differences."""
    c = vit_config(config)
    shapes = expected_shapes(c)
    missing = [k for k in shapes if k not in state]
    unexpected = [k for k in state if k not in shapes]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {shapes[k]})" for k in shapes
             if k in state and tuple(state[k].shape) != shapes[k]]
    if not (missing or unexpected or wrong):
        return

    def listed(items: List[str]) -> str:
        return ", ".join(items[:8]) + (f" … (+{len(items) - 8} more)" if len(items) > 8 else "")

    parts = []
    if missing:
        parts.append(f"missing {len(missing)} key(s): {listed(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} key(s): {listed(unexpected)}")
    if wrong:
        parts.append(f"{len(wrong)} shape mismatch(es): {listed(wrong)}")
    guess = guess_config(state)
    hint = (f"; the file looks like '{guess}' — choose that ViT" if guess else
            "; give an original DINOv2 checkpoint (facebookresearch layout, not a converted "
            "Hugging Face one)")
    raise InputError(f"{source} do not match DINOv2 '{c.name}': " + "; ".join(parts) + hint)


def load_foundation(path: str | Path, config: str | ViTConfig,
                    layers: Sequence[int] = (-1,)) -> FrozenViT:
    """A frozen DINOv2 ViT from a local ``.pth``/``.safetensors`` file (strict key check).

    Builds the network on the meta device and assigns the loaded tensors, so a ViT-g (1.1 B
    parameters, 4.5 GB) needs its weights in memory only once.
    """
    c = vit_config(config)
    state = read_state_dict(path)
    check_state_dict(state, c, source=str(path))
    state = {k: v.float() for k, v in state.items()}
    with torch.device("meta"):
        vit = ViT(c)
    vit.load_state_dict(state, strict=True, assign=True)
    return FrozenViT(vit, layers, source=str(path), fingerprint=weights_fingerprint(path))


def random_foundation(config: str | ViTConfig, seed: int = 0,
                      layers: Sequence[int] = (-1,)) -> FrozenViT:
    """A frozen, randomly initialised ViT (reproducible from ``seed``): a stand-in when no
    foundation weights are available."""
    c = vit_config(config)
    return FrozenViT(build_vit(c, seed), layers, source=None,
                     fingerprint=f"random:{c.name}:{int(seed)}")
