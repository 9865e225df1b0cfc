"""A frozen ViT feature extractor (never trains, always in eval mode) and the optional on-disk
cache of its features for repeated epochs.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import torch
from torch import nn

from .config import ViTConfig
from .model import ViT


class FrozenViT(nn.Module):
    """A ViT that never trains: no gradients, always in eval mode (``train()`` is ignored).

    ``forward(x)`` takes images whose edges are multiples of 14 and returns the normalised patch
    feature maps at ``layers``.  With a :class:`FeatureCache` attached, features of inputs seen
    before are read back instead of recomputed (keyed by weights fingerprint, window position and
    input hash).
    """

    def __init__(self, vit: ViT, layers: Sequence[int] = (-1,), source: Optional[str] = None,
                 fingerprint: Optional[str] = None) -> None:
        super().__init__()
        self.vit = vit
        self.layers = tuple(int(i) for i in layers)
        self.source = source
        self.fingerprint = fingerprint or f"unnamed:{vit.config.name}"
        self.cache: Optional[FeatureCache] = None
        for p in self.vit.parameters():
            p.requires_grad_(False)
        super().train(False)

    @property
    def config(self) -> ViTConfig:
        return self.vit.config

    @property
    def dim(self) -> int:
        return self.vit.config.embed_dim

    def train(self, mode: bool = True) -> "FrozenViT":
        return super().train(False)

    def forward(self, x: torch.Tensor, positions: Optional[Sequence] = None) -> List[torch.Tensor]:
        with torch.no_grad():
            if self.cache is None:
                return self.vit.forward_layers(x, self.layers)
            return self._cached(x, positions)

    def _cached(self, x: torch.Tensor, positions: Optional[Sequence]) -> List[torch.Tensor]:
        keys = [self.cache.key(self.fingerprint, positions[i] if positions else None, x[i],
                               self.layers) for i in range(x.shape[0])]
        found = [self.cache.get(k) for k in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        if missing:
            fresh = self.vit.forward_layers(x[missing], self.layers)
            for j, i in enumerate(missing):
                found[i] = [f[j] for f in fresh]
                self.cache.put(keys[i], found[i])
        return [torch.stack([f[k].to(x.device, x.dtype) for f in found])
                for k in range(len(self.layers))]


class FeatureCache:
    """On-disk cache of frozen-encoder features for repeated epochs, with a size limit.

    One safetensors file per (weights fingerprint, window position, input hash, layers) key; when
    the folder exceeds ``max_bytes`` the least recently used files are deleted.  Only worth it when
    the same windows recur without augmentation (the input hash changes with every flip/scale).
    """

    def __init__(self, folder: str | Path, max_bytes: int = 2 << 30) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self._size = sum(p.stat().st_size for p in self.folder.glob("*.safetensors"))

    @staticmethod
    def key(fingerprint: str, position, image: torch.Tensor, layers: Iterable[int]) -> str:
        h = hashlib.sha256()
        h.update(f"{fingerprint}|{position!r}|{tuple(layers)}|{tuple(image.shape)}|"
                 f"{image.dtype}|".encode())
        h.update(image.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.safetensors"

    def get(self, key: str) -> Optional[List[torch.Tensor]]:
        from safetensors.torch import load_file
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            data = load_file(str(path))
        except Exception:       # a damaged entry is a miss, never an error
            return None
        os.utime(path)
        return [data[str(i)] for i in range(len(data))]

    def put(self, key: str, tensors: Sequence[torch.Tensor]) -> None:
        from safetensors.torch import save_file
        path = self._path(key)
        tmp = path.with_suffix(".partial")
        save_file({str(i): t.detach().cpu().contiguous() for i, t in enumerate(tensors)},
                  str(tmp))
        os.replace(tmp, path)
        self._size += path.stat().st_size
        if self._size > self.max_bytes:
            self._evict()

    def _evict(self) -> None:
        files = sorted(self.folder.glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        target = self.max_bytes * 0.8
        for p in files:
            if total <= target:
                break
            size = p.stat().st_size
            p.unlink(missing_ok=True)
            total -= size
        self._size = total

    @property
    def size_bytes(self) -> int:
        return self._size
