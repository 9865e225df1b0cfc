"""Key names and shapes of the published checkpoints, generated the way each project's own code
names its modules (torchvision/timm ``ResNet``, TransUNet's ``load_from`` reading the Google
R50+ViT-B_16 ``.npz``); tests fill them with random values."""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Sequence, Tuple

import numpy as np
import torch

Shapes = "OrderedDict[str, Tuple[int, ...]]"


def resnet_shapes(layers: Sequence[int] = (3, 4, 6, 3), bottleneck: bool = True,
                  classes: int = 1000) -> Shapes:
    """torchvision ``resnet{18,34,50,101}().state_dict()`` names and shapes (timm's ``resnet*``
    use the same names)."""
    s: Shapes = OrderedDict()

    def bn(p: str, c: int) -> None:
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            s[f"{p}.{leaf}"] = (c,)
        s[f"{p}.num_batches_tracked"] = ()

    s["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    inplanes, expansion = 64, 4 if bottleneck else 1
    for li, n in enumerate(layers):
        planes = 64 * 2 ** li
        for b in range(n):
            p, out = f"layer{li + 1}.{b}", planes * expansion
            if bottleneck:
                s[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
                bn(f"{p}.bn1", planes)
                s[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn2", planes)
                s[f"{p}.conv3.weight"] = (out, planes, 1, 1)
                bn(f"{p}.bn3", out)
            else:
                s[f"{p}.conv1.weight"] = (planes, inplanes, 3, 3)
                bn(f"{p}.bn1", planes)
                s[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn2", planes)
            if b == 0 and (li > 0 or inplanes != out):
                s[f"{p}.downsample.0.weight"] = (out, inplanes, 1, 1)
                bn(f"{p}.downsample.1", out)
            inplanes = out
    s["fc.weight"] = (classes, inplanes)
    s["fc.bias"] = (classes,)
    return s


def vit_npz_shapes(units: Sequence[int] = (3, 4, 9), width: int = 64, blocks: int = 12,
                   hidden: int = 768, heads: int = 12, mlp: int = 3072, grid: int = 14,
                   classes: int = 21843) -> Shapes:
    """The Google ``R50+ViT-B_16.npz`` arrays (Flax layout) that TransUNet's loader reads."""
    s: Shapes = OrderedDict()
    s["conv_root/kernel"] = (7, 7, 3, width)
    s["gn_root/scale"], s["gn_root/bias"] = (width,), (width,)
    cin = width
    for b, n in enumerate(units):
        mid, out = width * 2 ** b, width * 2 ** b * 4
        for u in range(n):
            p = f"block{b + 1}/unit{u + 1}/"
            s[p + "conv1/kernel"] = (1, 1, cin if u == 0 else out, mid)
            s[p + "conv2/kernel"] = (3, 3, mid, mid)
            s[p + "conv3/kernel"] = (1, 1, mid, out)
            for g, c in (("gn1", mid), ("gn2", mid), ("gn3", out)):
                s[p + g + "/scale"], s[p + g + "/bias"] = (c,), (c,)
            if u == 0:
                s[p + "conv_proj/kernel"] = (1, 1, cin, out)
                s[p + "gn_proj/scale"], s[p + "gn_proj/bias"] = (out,), (out,)
        cin = out
    s["embedding/kernel"], s["embedding/bias"] = (1, 1, cin, hidden), (hidden,)
    s["cls"] = (1, 1, hidden)
    s["Transformer/posembed_input/pos_embedding"] = (1, 1 + grid * grid, hidden)
    dh = hidden // heads
    for i in range(blocks):
        p = f"Transformer/encoderblock_{i}/"
        for ln in ("LayerNorm_0", "LayerNorm_2"):
            s[p + ln + "/scale"], s[p + ln + "/bias"] = (hidden,), (hidden,)
        a = p + "MultiHeadDotProductAttention_1/"
        for q in ("query", "key", "value"):
            s[a + q + "/kernel"], s[a + q + "/bias"] = (hidden, heads, dh), (heads, dh)
        s[a + "out/kernel"], s[a + "out/bias"] = (heads, dh, hidden), (hidden,)
        s[p + "MlpBlock_3/Dense_0/kernel"], s[p + "MlpBlock_3/Dense_0/bias"] = (hidden, mlp), (mlp,)
        s[p + "MlpBlock_3/Dense_1/kernel"], s[p + "MlpBlock_3/Dense_1/bias"] = (mlp, hidden), (hidden,)
    s["Transformer/encoder_norm/scale"], s["Transformer/encoder_norm/bias"] = (hidden,), (hidden,)
    s["pre_logits/kernel"], s["pre_logits/bias"] = (hidden, hidden), (hidden,)
    s["head/kernel"], s["head/bias"] = (hidden, classes), (classes,)
    return s


def random_tensors(shapes: Shapes, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Random float32 values (int64 step counters) in the given names and shapes."""
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.tensor(7) if k.endswith("num_batches_tracked") else
                torch.randn(s, generator=g)) for k, s in shapes.items()}


def random_arrays(shapes: Shapes, seed: int = 0) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def sam_shapes(dim: int = 768, depth: int = 12, heads: int = 12,
               global_blocks: Sequence[int] = (2, 5, 8, 11), grid: int = 64,
               window: int = 14) -> Shapes:
    """``sam_vit_{b,l,h}_*.pth`` names and shapes (segment-anything's ``Sam`` state dict:
    ``ImageEncoderViT``, ``PromptEncoder``, ``MaskDecoder`` with a two-way transformer)."""
    s: Shapes = OrderedDict()
    e = "image_encoder."
    s[e + "pos_embed"] = (1, grid, grid, dim)
    s[e + "patch_embed.proj.weight"], s[e + "patch_embed.proj.bias"] = (dim, 3, 16, 16), (dim,)
    hd = dim // heads
    for i in range(depth):
        b = f"{e}blocks.{i}."
        size = grid if i in global_blocks else window
        s[b + "norm1.weight"], s[b + "norm1.bias"] = (dim,), (dim,)
        s[b + "attn.rel_pos_h"], s[b + "attn.rel_pos_w"] = (2 * size - 1, hd), (2 * size - 1, hd)
        s[b + "attn.qkv.weight"], s[b + "attn.qkv.bias"] = (3 * dim, dim), (3 * dim,)
        s[b + "attn.proj.weight"], s[b + "attn.proj.bias"] = (dim, dim), (dim,)
        s[b + "norm2.weight"], s[b + "norm2.bias"] = (dim,), (dim,)
        s[b + "mlp.lin1.weight"], s[b + "mlp.lin1.bias"] = (4 * dim, dim), (4 * dim,)
        s[b + "mlp.lin2.weight"], s[b + "mlp.lin2.bias"] = (dim, 4 * dim), (dim,)
    s[e + "neck.0.weight"] = (256, dim, 1, 1)
    s[e + "neck.1.weight"], s[e + "neck.1.bias"] = (256,), (256,)
    s[e + "neck.2.weight"] = (256, 256, 3, 3)
    s[e + "neck.3.weight"], s[e + "neck.3.bias"] = (256,), (256,)
    p = "prompt_encoder."
    s[p + "pe_layer.positional_encoding_gaussian_matrix"] = (2, 128)
    for i in range(4):
        s[f"{p}point_embeddings.{i}.weight"] = (1, 256)
    s[p + "not_a_point_embed.weight"] = (1, 256)
    for i, (cout, cin, k) in {0: (4, 1, 2), 3: (16, 4, 2), 6: (256, 16, 1)}.items():
        s[f"{p}mask_downscaling.{i}.weight"], s[f"{p}mask_downscaling.{i}.bias"] = \
            (cout, cin, k, k), (cout,)
    for i, c in ((1, 4), (4, 16)):
        s[f"{p}mask_downscaling.{i}.weight"], s[f"{p}mask_downscaling.{i}.bias"] = (c,), (c,)
    s[p + "no_mask_embed.weight"] = (1, 256)
    d = "mask_decoder."
    t = d + "transformer."

    def attn(prefix: str, inner: int) -> None:
        for n in ("q_proj", "k_proj", "v_proj"):
            s[f"{prefix}.{n}.weight"], s[f"{prefix}.{n}.bias"] = (inner, 256), (inner,)
        s[f"{prefix}.out_proj.weight"], s[f"{prefix}.out_proj.bias"] = (256, inner), (256,)

    for i in range(2):
        lp = f"{t}layers.{i}."
        attn(lp + "self_attn", 256)
        attn(lp + "cross_attn_token_to_image", 128)
        s[lp + "mlp.lin1.weight"], s[lp + "mlp.lin1.bias"] = (2048, 256), (2048,)
        s[lp + "mlp.lin2.weight"], s[lp + "mlp.lin2.bias"] = (256, 2048), (256,)
        for n in range(1, 5):
            s[f"{lp}norm{n}.weight"], s[f"{lp}norm{n}.bias"] = (256,), (256,)
        attn(lp + "cross_attn_image_to_token", 128)
    attn(t + "final_attn_token_to_image", 128)
    s[t + "norm_final_attn.weight"], s[t + "norm_final_attn.bias"] = (256,), (256,)
    s[d + "iou_token.weight"], s[d + "mask_tokens.weight"] = (1, 256), (4, 256)
    s[d + "output_upscaling.0.weight"], s[d + "output_upscaling.0.bias"] = (256, 64, 2, 2), (64,)
    s[d + "output_upscaling.1.weight"], s[d + "output_upscaling.1.bias"] = (64,), (64,)
    s[d + "output_upscaling.3.weight"], s[d + "output_upscaling.3.bias"] = (64, 32, 2, 2), (32,)
    for m in range(4):
        for j, (cout, cin) in enumerate(((256, 256), (256, 256), (32, 256))):
            key = f"{d}output_hypernetworks_mlps.{m}.layers.{j}."
            s[key + "weight"], s[key + "bias"] = (cout, cin), (cout,)
    for j, (cout, cin) in enumerate(((256, 256), (256, 256), (4, 256))):
        key = f"{d}iou_prediction_head.layers.{j}."
        s[key + "weight"], s[key + "bias"] = (cout, cin), (cout,)
    return s


#: (dim, depth, heads, global blocks) of the published SAM variants.
SAM_VARIANTS = {"vit_b": (768, 12, 12, (2, 5, 8, 11)), "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
                "vit_h": (1280, 32, 16, (7, 15, 23, 31))}
