"""VSGNet's fusion of the RGB and structure streams: the FE (fusion enhancement) blocks, the FR
(feature recalibration) module and the stage that chains them.

FE (fusion enhancement) block, channels-last, both streams width C (heads h, window 7)::

    x̂ = LN(x1), ê = LN(x2)
    global: q = Linear(2C→C/2)(avgpool₇ₓ₇[x̂, ê]) (49 queries, h heads of C/(2h));
            [k | v] = Linear(C→C)(GELU(Linear(C→C)(x̂)))  (C/2 each);
            softmax(q·kᵀ/√d)·v over all H·W positions → 7×7×C/2 → bilinear to H×W
    local:  Linear(C→C/2)(x̂) ⊙ Linear(C/2→C/2)(dw7×7(Linear(C→C/2)(ê)))
    u = [global, local] (C);  x1 += ls·DropPath(Linear(C→C)(u));  x2 += ls·DropPath(Linear(C→C)(u))
    MLP per stream: LN → Linear C→rC → (+ dw3×3 conv) → GELU → Linear rC→C, residual, layer scale
    (the very last block of the network skips every structure-stream update: its output feeds
    only the RGB stream through the last FR).

FR (feature recalibration), stage inputs x1, x2 and FE outputs h1, h2 (B×C×H×W)::

    a_m = 1×1(2C→C)([x1, x2])             (m = 1, 2; separate convs)
    p_m = Σ_HW softmax_HW(a_m) ⊙ a_m        (self-weighted soft-max pooling → C-vector)
    g_m = σ(1×1(C/r→C)(1×1(C→C/r)(p_m)))   (two 1×1 convs, no activation, r = 4)
    r1 = x1·g1 + x2,  r2 = x2·g2 + x1
    s_m = Σ_C softmax_C(r_m) ⊙ r_m          (1×H×W)
    y1 = x1·s1 + x2 + h1,  y2 = x2·s2 + x1 + h2
    x1' = 1×1(2C→C)([y1, y2]),  x2' = 1×1(2C→C)([y1, y2])   (x2' not built in the last stage)

Readings chosen (where §4 is silent, ambiguous, or the release is buggy):

* **FE update of x_e** is a separate Linear C→C; skipped in the very last block (and with it the
  structure-stream MLP), and the last FR builds no x2 output conv — so every trainable parameter
  receives a gradient (DDP without ``find_unused_parameters``).
* **FR**: single exponentials (the release's softmax of exp(a) double exponential is a bug);
  "weighted sum" read as the self-weighted soft-max pooling of the attention logits themselves;
  the two gate convs use a C/4 bottleneck (``fr_reduction``) with no activation between them.
* **Stage outputs** are LayerNorm'ed before the decoder (``out_norm=True``, as in DFormer).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ConvMlp, DropPath, LayerNorm2d, LayerScale


class FEBlock(nn.Module):
    """Fusion-enhancement block (DFormer-style RGB-X attention); streams channels-last B×H×W×C."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop_path: float,
                 ls_init: float, last: bool = False, window: int = 7) -> None:
        super().__init__()
        if dim % 2 or (dim // 2) % heads:
            raise ValueError(f"FE width {dim} must be even and C/2 divisible by {heads} heads")
        half = dim // 2
        self.heads, self.window, self.last = heads, window, last
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.norm_e = nn.LayerNorm(dim, eps=1e-6)
        # (i) global branch
        self.query = nn.Linear(2 * dim, half)
        self.kv_in = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim)
        # (ii) local branch
        self.local = nn.Linear(dim, half)
        self.local_e_in = nn.Linear(dim, half)
        self.local_e_conv = nn.Conv2d(half, half, 7, padding=3, groups=half)
        self.local_e_out = nn.Linear(half, half)
        self.proj = nn.Linear(dim, dim)
        self.ls1 = LayerScale(dim, ls_init)
        self.mlp = ConvMlp(dim, mlp_ratio)
        self.ls2 = LayerScale(dim, ls_init)
        if not last:
            self.proj_e = nn.Linear(dim, dim)
            self.ls1_e = LayerScale(dim, ls_init)
            self.mlp_e = ConvMlp(dim, mlp_ratio)
            self.ls2_e = LayerScale(dim, ls_init)
        self.drop_path = DropPath(drop_path)

    def _global(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        half, heads, win = c // 2, self.heads, self.window
        hd = half // heads
        pooled = F.adaptive_avg_pool2d(torch.cat([x, e], -1).permute(0, 3, 1, 2), win)
        q = self.query(pooled.permute(0, 2, 3, 1)).reshape(b, win * win, heads, hd).transpose(1, 2)
        kv = self.kv(F.gelu(self.kv_in(x))).reshape(b, h * w, 2, heads, hd).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1])          # B×heads×49×hd
        out = out.transpose(2, 3).reshape(b, half, win, win)
        out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
        return out.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        xn, en = self.norm(x), self.norm_e(e)
        le = self.local_e_in(en).permute(0, 3, 1, 2)
        le = self.local_e_out(self.local_e_conv(le).permute(0, 2, 3, 1))
        u = torch.cat([self._global(xn, en), self.local(xn) * le], dim=-1)
        x = x + self.drop_path(self.ls1(self.proj(u)))
        x = x + self.drop_path(self.ls2(self.mlp(x)))
        if not self.last:
            e = e + self.drop_path(self.ls1_e(self.proj_e(u)))
            e = e + self.drop_path(self.ls2_e(self.mlp_e(e)))
        return x, e


def _softmax_pool(a: torch.Tensor, dims: Tuple[int, ...]) -> torch.Tensor:
    """Σ softmax(a) ⊙ a over ``dims`` (flattened), keeping them as size-1 dims."""
    shape = a.shape
    keep = [d for d in range(a.ndim) if d not in dims]
    flat = a.permute(*keep, *dims).reshape(*[shape[d] for d in keep], -1)
    pooled = (torch.softmax(flat, dim=-1) * flat).sum(-1)
    out_shape = [1 if d in dims else shape[d] for d in range(a.ndim)]
    # restore the original dim order (kept dims are in order)
    return pooled.reshape(out_shape)


class FRModule(nn.Module):
    """Feature recalibration of the two streams after a stage's FE blocks (see module docstring)."""

    def __init__(self, dim: int, reduction: int = 4, last: bool = False) -> None:
        super().__init__()
        mid = max(dim // reduction, 1)
        self.att1 = nn.Conv2d(2 * dim, dim, 1)
        self.att2 = nn.Conv2d(2 * dim, dim, 1)
        self.gate1 = nn.Sequential(nn.Conv2d(dim, mid, 1), nn.Conv2d(mid, dim, 1))
        self.gate2 = nn.Sequential(nn.Conv2d(dim, mid, 1), nn.Conv2d(mid, dim, 1))
        self.out1 = nn.Conv2d(2 * dim, dim, 1)
        self.out2 = None if last else nn.Conv2d(2 * dim, dim, 1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, h1: torch.Tensor, h2: torch.Tensor
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        cat = torch.cat([x1, x2], dim=1)
        g1 = torch.sigmoid(self.gate1(_softmax_pool(self.att1(cat), (2, 3))))
        g2 = torch.sigmoid(self.gate2(_softmax_pool(self.att2(cat), (2, 3))))
        r1, r2 = x1 * g1 + x2, x2 * g2 + x1
        s1, s2 = _softmax_pool(r1, (1,)), _softmax_pool(r2, (1,))
        y = torch.cat([x1 * s1 + x2 + h1, x2 * s2 + x1 + h2], dim=1)
        return self.out1(y), (self.out2(y) if self.out2 is not None else None)


class Stage(nn.Module):
    """[downsample per stream] → FE blocks → FR → (x1, x2, decoder feature)."""

    def __init__(self, cin: int, dim: int, depth: int, heads: int, mlp_ratio: float,
                 drop_paths: Sequence[float], ls_init: float, last: bool,
                 fr_reduction: int, out_norm: bool) -> None:
        super().__init__()
        self.down1 = self.down2 = None
        if cin:
            self.down1 = nn.Sequential(nn.BatchNorm2d(cin), nn.Conv2d(cin, dim, 3, 2, 1))
            self.down2 = nn.Sequential(nn.BatchNorm2d(cin), nn.Conv2d(cin, dim, 3, 2, 1))
        self.blocks = nn.ModuleList(
            FEBlock(dim, heads, mlp_ratio, drop_paths[i], ls_init, last=last and i == depth - 1)
            for i in range(depth))
        self.fr = FRModule(dim, fr_reduction, last=last)
        self.out_norm = LayerNorm2d(dim, eps=1e-6) if out_norm else nn.Identity()

    def forward(self, x1: torch.Tensor, x2: torch.Tensor):
        if self.down1 is not None:
            x1, x2 = self.down1(x1), self.down2(x2)
        h1, h2 = x1.permute(0, 2, 3, 1), x2.permute(0, 2, 3, 1)
        for blk in self.blocks:
            h1, h2 = blk(h1, h2)
        n1, n2 = self.fr(x1, x2, h1.permute(0, 3, 1, 2), h2.permute(0, 3, 1, 2))
        return n1, n2, self.out_norm(n1)
