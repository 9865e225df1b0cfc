"""A plain Vision Transformer with the parameter layout of the public DINOv2 checkpoints, and a
frozen, local-file-only feature extractor built on it (``load_foundation``).

Written from general knowledge of the DINOv2 architecture (Oquab et al., 2023); no DINOv2 code is
used.  The point of matching the layout is that the released ``dinov2_vit*14*_pretrain.pth`` files
load with a strict name check and no renaming.

State-dict layout (D = width, L = depth, R = register tokens, N = (img_size/14)² = 37² = 1369 for
the released 518-pixel position table, hidden = 4·D)::

    cls_token                    [1, 1, D]
    pos_embed                    [1, 1 + N, D]          (cls position first, then a 37×37 grid)
    register_tokens              [1, R, D]              (only the "_reg" models, R = 4)
    mask_token                   [1, D]                 (iBOT mask token; unused for features)
    patch_embed.proj.weight      [D, 3, 14, 14]
    patch_embed.proj.bias        [D]
    blocks.{i}.norm1.weight/bias                [D]      i = 0 … L-1
    blocks.{i}.attn.qkv.weight  [3D, D]  .bias [3D]      rows: q | k | v, heads contiguous
    blocks.{i}.attn.proj.weight [D, D]   .bias [D]
    blocks.{i}.ls1.gamma                        [D]      LayerScale
    blocks.{i}.norm2.weight/bias                [D]
    blocks.{i}.mlp.fc1.weight [hidden, D] .bias [hidden] (ViT-S/B/L: GELU MLP)
    blocks.{i}.mlp.fc2.weight [D, hidden] .bias [D]
    blocks.{i}.mlp.w12.weight [2h, D] .bias [2h]         (ViT-g: fused SwiGLU,
    blocks.{i}.mlp.w3.weight  [D, h]  .bias [D]           h = round8(⌊hidden·2/3⌋) = 4096)
    blocks.{i}.ls2.gamma                        [D]
    norm.weight / norm.bias                     [D]      final LayerNorm

=========  =====  =====  =====  ========  ==================
name       D      L      heads  MLP       parameters
=========  =====  =====  =====  ========  ==================
vits14     384    12     6      GELU 4×   22.06 M
vitb14     768    12     12     GELU 4×   86.58 M
vitl14     1024   24     16     GELU 4×   304.4 M
vitg14     1536   40     24     SwiGLU    1.137 B
=========  =====  =====  =====  ========  ==================

(``_reg`` adds 4·D parameters.)  All LayerNorms use eps 1e-6; attention has q/k/v and projection
biases; GELU is the exact (erf) form.  Forward: patch embedding → prepend the cls token → add the
position table (bicubically resized to the token grid of the input; the non-register models use
DINOv2's 0.1 offset without antialiasing, the register models size-based resizing with
antialiasing) → insert the register tokens after the cls token → L pre-norm blocks
``x += ls1(attn(norm1(x))); x += ls2(mlp(norm2(x)))`` → final norm.  The "normalised patch tokens"
are the final-norm outputs at the patch positions (cls and registers dropped).

Released checkpoints come as plain state dicts; :func:`load_foundation` also unwraps the usual
training wrappers (``teacher``/``model``/``state_dict`` nesting, a ``backbone.`` prefix, chunked
``blocks.{chunk}.{i}`` numbering) before the strict check.  Only local files are read — there is no
download code in this module.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..jobs import InputError

PATCH = 14
#: Mean/std of the ImageNet normalisation the DINOv2 weights were trained with (0..1 RGB).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ViTConfig:
    """Shape of a DINOv2-style ViT."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    ffn: str = "mlp"                 # "mlp" (GELU) or "swiglu" (fused SwiGLU, ViT-g)
    num_register_tokens: int = 0
    patch_size: int = PATCH
    img_size: int = 518              # size the position table was trained for (37×37 tokens)
    interpolate_antialias: bool = False
    interpolate_offset: float = 0.1

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    @property
    def hidden(self) -> int:
        """MLP hidden width (per half for SwiGLU)."""
        h = int(self.embed_dim * self.mlp_ratio)
        if self.ffn == "swiglu":
            h = (int(h * 2 / 3) + 7) // 8 * 8
        return h


_BASE = {
    "vits14": dict(embed_dim=384, depth=12, num_heads=6),
    "vitb14": dict(embed_dim=768, depth=12, num_heads=12),
    "vitl14": dict(embed_dim=1024, depth=24, num_heads=16),
    "vitg14": dict(embed_dim=1536, depth=40, num_heads=24, ffn="swiglu"),
    # tiny stand-in for tests (patch 14, 4×4 position grid): same code paths, ~0.1 M parameters
    "tiny": dict(embed_dim=64, depth=2, num_heads=2, img_size=56),
}
CONFIG_NAMES = tuple(sorted([n for n in _BASE] + [n + "_reg" for n in _BASE]))


def vit_config(name: str | ViTConfig) -> ViTConfig:
    """Configuration by name: ``vits14``, ``vitb14``, ``vitl14``, ``vitg14``, ``tiny``, each
    optionally with ``_reg`` (4 register tokens) and an optional ``dinov2_`` prefix."""
    if isinstance(name, ViTConfig):
        return name
    key = str(name).lower().strip()
    key = key[len("dinov2_"):] if key.startswith("dinov2_") else key
    reg = key.endswith("_reg")
    base = key[:-4] if reg else key
    if base not in _BASE:
        raise InputError(f"unknown foundation ViT '{name}'; available: {', '.join(CONFIG_NAMES)}")
    extra = dict(num_register_tokens=4, interpolate_antialias=True, interpolate_offset=0.0) \
        if reg else {}
    return ViTConfig(name=base + ("_reg" if reg else ""), **{**_BASE[base], **extra})


def expected_shapes(config: str | ViTConfig) -> "OrderedDict[str, Tuple[int, ...]]":
    """The state-dict keys and shapes of ``config`` in DINOv2 order (see the module docstring)."""
    c = vit_config(config)
    d, h = c.embed_dim, c.hidden
    out: "OrderedDict[str, Tuple[int, ...]]" = OrderedDict()
    out["cls_token"] = (1, 1, d)
    out["pos_embed"] = (1, 1 + c.grid ** 2, d)
    if c.num_register_tokens:
        out["register_tokens"] = (1, c.num_register_tokens, d)
    out["mask_token"] = (1, d)
    out["patch_embed.proj.weight"] = (d, 3, c.patch_size, c.patch_size)
    out["patch_embed.proj.bias"] = (d,)
    for i in range(c.depth):
        p = f"blocks.{i}."
        out[p + "norm1.weight"] = (d,)
        out[p + "norm1.bias"] = (d,)
        out[p + "attn.qkv.weight"] = (3 * d, d)
        out[p + "attn.qkv.bias"] = (3 * d,)
        out[p + "attn.proj.weight"] = (d, d)
        out[p + "attn.proj.bias"] = (d,)
        out[p + "ls1.gamma"] = (d,)
        out[p + "norm2.weight"] = (d,)
        out[p + "norm2.bias"] = (d,)
        if c.ffn == "swiglu":
            out[p + "mlp.w12.weight"] = (2 * h, d)
            out[p + "mlp.w12.bias"] = (2 * h,)
            out[p + "mlp.w3.weight"] = (d, h)
            out[p + "mlp.w3.bias"] = (d,)
        else:
            out[p + "mlp.fc1.weight"] = (h, d)
            out[p + "mlp.fc1.bias"] = (h,)
            out[p + "mlp.fc2.weight"] = (d, h)
            out[p + "mlp.fc2.bias"] = (d,)
        out[p + "ls2.gamma"] = (d,)
    out["norm.weight"] = (d,)
    out["norm.bias"] = (d,)
    return out


# ---- modules ---------------------------------------------------------------------------------

class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)          # B×N×D


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float = 1.0) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwiGLU(nn.Module):
    """Fused SwiGLU: ``w3(silu(a) * b)`` with ``[a | b] = w12(x)``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


class Block(nn.Module):
    def __init__(self, c: ViTConfig) -> None:
        super().__init__()
        d = c.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.attn = Attention(d, c.num_heads)
        self.ls1 = LayerScale(d)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = SwiGLU(d, c.hidden) if c.ffn == "swiglu" else Mlp(d, c.hidden)
        self.ls2 = LayerScale(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class ViT(nn.Module):
    """DINOv2-layout Vision Transformer (see the module docstring)."""

    def __init__(self, config: str | ViTConfig) -> None:
        super().__init__()
        c = self.config = vit_config(config)
        d = c.embed_dim
        self.patch_embed = PatchEmbed(c.patch_size, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + c.grid ** 2, d))
        self.register_tokens = (nn.Parameter(torch.zeros(1, c.num_register_tokens, d))
                                if c.num_register_tokens else None)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.depth))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.mask_token = nn.Parameter(torch.zeros(1, d))
        if not any(p.is_meta for p in self.parameters()):
            self.reset_parameters()

    @property
    def num_prefix_tokens(self) -> int:
        return 1 + self.config.num_register_tokens

    def reset_parameters(self) -> None:
        """Random initialisation (truncated normal 0.02 for weights and tables, zero biases)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)
        nn.init.zeros_(self.mask_token)

    def position_table(self, gh: int, gw: int) -> torch.Tensor:
        """Position embeddings for a gh×gw token grid (1 × (1+gh·gw) × D)."""
        c, pos = self.config, self.pos_embed
        m = c.grid
        if (gh, gw) == (m, m):
            return pos
        patch = pos[:, 1:].float().reshape(1, m, m, -1).permute(0, 3, 1, 2)
        if c.interpolate_offset:
            off = c.interpolate_offset
            kw = {"scale_factor": ((gh + off) / m, (gw + off) / m)}
        else:
            kw = {"size": (gh, gw)}
        patch = F.interpolate(patch, mode="bicubic", antialias=c.interpolate_antialias, **kw)
        patch = patch[..., :gh, :gw].permute(0, 2, 3, 1).reshape(1, gh * gw, -1)
        return torch.cat([pos[:, :1].float(), patch], dim=1).to(pos.dtype)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Input tokens: [cls, registers…, patches…] with positions added (B × T × D)."""
        b, _, h, w = x.shape
        p = self.config.patch_size
        t = self.patch_embed(x)
        t = torch.cat([self.cls_token.expand(b, -1, -1), t], dim=1)
        t = t + self.position_table(h // p, w // p).to(t.dtype)
        if self.register_tokens is not None:
            t = torch.cat([t[:, :1], self.register_tokens.expand(b, -1, -1), t[:, 1:]], dim=1)
        return t

    def forward_layers(self, x: torch.Tensor, layers: Sequence[int]) -> List[torch.Tensor]:
        """Normalised patch features (B × D × H/14 × W/14) after each block index in ``layers``
        (negative indexes count from the end; -1 is the last block)."""
        p = self.config.patch_size
        if x.shape[-1] % p or x.shape[-2] % p:
            raise ValueError(f"ViT input edges must be multiples of {p}, got {tuple(x.shape[-2:])}")
        gh, gw = x.shape[-2] // p, x.shape[-1] // p
        wanted = sorted({i % len(self.blocks) for i in layers})
        t = self.tokens(x)
        out: Dict[int, torch.Tensor] = {}
        for i, blk in enumerate(self.blocks):
            t = blk(t)
            if i in wanted:
                f = self.norm(t)[:, self.num_prefix_tokens:]
                out[i] = f.transpose(1, 2).reshape(t.shape[0], -1, gh, gw)
            if i >= wanted[-1]:
                break
        return [out[i % len(self.blocks)] for i in layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised patch tokens of the last block as a B × D × H/14 × W/14 map."""
        return self.forward_layers(x, [-1])[0]


# ---- frozen extractor ------------------------------------------------------------------------

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


# ---- loading ---------------------------------------------------------------------------------

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


def guess_config(state: Mapping[str, torch.Tensor]) -> Optional[str]:
    """The configuration name whose layout a state dict has, or None."""
    for name in CONFIG_NAMES:
        shapes = expected_shapes(name)
        if set(shapes) == set(state) and all(tuple(state[k].shape) == s
                                             for k, s in shapes.items()):
            return name
    return None


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


def build_vit(config: str | ViTConfig, seed: Optional[int] = None) -> ViT:
    """A randomly initialised ViT; with ``seed`` the result is the same on every call and the
    global random state is left untouched."""
    if seed is None:
        return ViT(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return ViT(config)


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


def to_patch_multiple(x: torch.Tensor, patch: int = PATCH) -> torch.Tensor:
    """Resize (bilinear) to the next multiple of ``patch`` on both edges (512 → 518)."""
    h, w = x.shape[-2:]
    th, tw = math.ceil(h / patch) * patch, math.ceil(w / patch) * patch
    if (th, tw) == (h, w):
        return x
    return F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False)


def parameter_count(config: str | ViTConfig) -> int:
    """Number of parameters of ``config`` (from the layout, no allocation)."""
    return sum(math.prod(s) for s in expected_shapes(config).values())


__all__ = ["ViT", "ViTConfig", "FrozenViT", "FeatureCache", "vit_config", "expected_shapes",
           "load_foundation", "random_foundation", "build_vit", "check_state_dict",
           "read_state_dict", "weights_fingerprint", "to_patch_multiple", "parameter_count",
           "guess_config", "CONFIG_NAMES", "IMAGENET_MEAN", "IMAGENET_STD"]
