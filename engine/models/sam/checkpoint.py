"""Published Segment Anything checkpoints (``sam_vit_{b,l,h}_*.pth``) → the engine's SAM.

The names are the network's own (:mod:`engine.models.sam`), so the mapping is the identity with
a strict name and shape check; the variant is read from the shapes (width from the patch
embedding, depth from the block count, global-attention blocks from their 127-row relative
position tables).  An image-encoder-only file (the ``image_encoder.`` names without the prefix)
serves feature extraction but not click-to-segment, which needs the prompt encoder and decoder.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Mapping

import torch

from ...jobs import ModelFileError
from ...io.weight_layouts import KNOWN, detect
from ...io.weight_files import read_weights

ENCODER = "image_encoder."


def full_names(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """``state`` with the ``image_encoder.`` prefix added to an encoder-only file's names."""
    if any(k.startswith(ENCODER) for k in state):
        return dict(state)
    return {ENCODER + k: v for k, v in state.items()}


def variant(state: Mapping[str, torch.Tensor], source: str = "the file"):
    """The :class:`SamConfig` whose shapes ``state`` (full names) has."""
    from . import CONFIGS
    try:
        dim = state[ENCODER + "patch_embed.proj.weight"].shape[0]
    except KeyError:
        raise ModelFileError(f"{source} has no SAM image encoder (image_encoder.patch_embed); "
                             f"give a published sam_vit_b/l/h checkpoint") from None
    blocks = {int(m.group(1)) for k in state
              if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))}
    grid = state[ENCODER + "pos_embed"].shape[1]
    rows = {i: state[f"{ENCODER}blocks.{i}.attn.rel_pos_h"].shape[0] for i in blocks}
    global_blocks = tuple(sorted(i for i, n in rows.items() if n == 2 * grid - 1))
    for config in CONFIGS.values():
        if (config.dim, config.depth, config.global_blocks) == (dim, len(blocks), global_blocks):
            return config
    raise ModelFileError(f"{source} is a SAM-layout checkpoint of width {dim} and {len(blocks)} "
                         f"blocks, which is none of ViT-B/L/H; give a published sam_vit_* file")


def load_sam(path: str | Path, need_decoder: bool = True):
    """A :class:`Sam` with the published weights of ``path`` (strict names and shapes)."""
    from . import Sam
    wf = read_weights(path)
    if detect(wf.tensors) != "sam":
        raise ModelFileError(f"{wf.path} is not a Segment Anything checkpoint; give "
                             f"{KNOWN['sam']}")
    state = full_names(wf.tensors)
    config = variant(state, str(wf.path))
    with torch.device("meta"):
        sam = Sam(config)
    own = sam.state_dict()
    if not need_decoder:           # the encoder alone: a full checkpoint's decoder is not used
        own = {k: v for k, v in own.items() if k.startswith(ENCODER)}
        state = {k: v for k, v in state.items() if k.startswith(ENCODER)}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        what = "; ".join(f"{n} {label}: {', '.join(items[:3])}" for label, items, n in
                         (("missing", missing, len(missing)),
                          ("unexpected", unexpected, len(unexpected)),
                          ("with other shapes", wrong, len(wrong))) if items)
        decoder_only = all(k.startswith(("prompt_encoder.", "mask_decoder.")) for k in missing)
        hint = " (an image-encoder-only file cannot decode clicks)" if missing and decoder_only \
            else ""
        raise ModelFileError(f"{wf.path} does not match SAM {config.name}: {what}{hint}; give "
                             f"the published checkpoint")
    sam.load_state_dict({k: state[k].float() for k in own}, strict=need_decoder, assign=True)
    if not need_decoder:          # the unused parts stay on the meta device: drop them
        sam.prompt_encoder = sam.mask_decoder = None
    return sam.eval()
