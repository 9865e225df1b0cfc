"""The ONNX Runtime graph of an ``.rsmodel``: exported once, cached by a hash of its weights.

Unlike ``engine export`` (a graph for other tools: 0–1 inputs, normalisation folded in, Deepness
metadata), this graph is RS Seg's own fast path: it takes the pipeline's already normalised
windows, one input per card group, and returns the softmax probabilities, with the batch and
the window size dynamic (``--tile`` and GSD resampling change the window).  It lives in the
cache folder (``RS_SEG_CACHE``, else ``$XDG_CACHE_HOME/rs-seg``, else ``~/.cache/rs-seg``),
not beside the model, so model folders never list it as a model.  Its name carries a SHA-256
of what the graph is made of — the architecture, its hyper-parameters, the input groups and
every weight tensor — so a changed model file, or a network changed in memory, gets a new graph
and a stale one is never used, while a card-only change (an int8 record) keeps it.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional

from ...jobs import EngineError, ModelFileError, atomic_output
from ..card import LoadedModel
from .export import NOT_EXPORTABLE, OPSET, OUTPUT_NAME, TOLERANCE, _max_difference, _trace

PRECISIONS = ("fp32", "int8")


class CacheUnwritable(EngineError):
    """The graph cache folder cannot be written (the caller falls back to torch)."""


def cache_dir() -> Path:
    """The folder of cached runtime graphs."""
    root = os.environ.get("RS_SEG_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "rs-seg")
    return Path(root) / "onnx"


def weights_key(lm: LoadedModel) -> str:
    """SHA-256 (hex) of the architecture, hyper-parameters, input groups and weights of a torch
    model: everything its runtime graph is made of."""
    card = lm.card
    digest = hashlib.sha256(json.dumps(
        [card["architecture"], card.get("hparams", {}),
         {g: len(spec["bands"]) for g, spec in card["inputs"].items()}],
        sort_keys=True).encode())
    for name, tensor in lm.network.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cached_path(lm: LoadedModel, precision: str = "fp32") -> Path:
    """Where the ``precision`` graph of ``lm`` is (or will be) cached."""
    stem = lm.path.stem if lm.path is not None else lm.card["architecture"]
    return cache_dir() / f"{stem}-{weights_key(lm)[:24]}-{precision}.onnx"


def runtime_spec(card: Dict[str, Any]) -> Dict[str, Any]:
    """The :class:`engine.formats.onnx.model.OnnxNetwork` spec of a runtime graph: inputs as the
    pipeline gives them (no rescaling), probabilities out."""
    groups = card["inputs"]
    return {"inputs": {g: g for g in groups}, "output": OUTPUT_NAME,
            "scale": {g: [1.0] * len(s["bands"]) for g, s in groups.items()},
            "offset": {g: [0.0] * len(s["bands"]) for g, s in groups.items()},
            "batch": None, "channel_axis": True, "margin": 0, "activation": "probabilities",
            "binary": False, "threshold": None}


def probabilities_module(network: Any, groups: Any) -> Any:
    """A torch module: normalised inputs (one per card ``groups``, in order) → softmax
    probabilities."""
    import torch

    from ...compute.backend import logits_of

    class Probabilities(torch.nn.Module):
        def __init__(self, groups: Any) -> None:
            super().__init__()
            self.network, self.groups = network.eval(), list(groups)

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            named = dict(zip(self.groups, inputs))
            return torch.softmax(logits_of(self.network(**named)).float(), dim=1)

    return Probabilities(groups).eval()


def example_batch(card: Dict[str, Any], batch: int = 1, size: Optional[int] = None) -> list:
    """A seeded standard-normal batch per input group (the pipeline's normalised scale)."""
    import torch
    g = torch.Generator().manual_seed(0)
    size = size or int(card["tile_size"])
    return [torch.randn(batch, len(s["bands"]), size, size, generator=g)
            for s in card["inputs"].values()]


def export_runtime_graph(lm: LoadedModel) -> bytes:
    """The fp32 runtime graph of a torch model, checked against torch (max |Δp| ≤ 1e-4)."""
    card = lm.card
    arch = card["architecture"]
    wrapper = probabilities_module(lm.network, card["inputs"])
    example = example_batch(card)
    data = _trace(wrapper, example, list(card["inputs"]), OPSET, True, arch)
    diff = _max_difference(wrapper, data, example)
    if not diff <= TOLERANCE:
        raise ModelFileError(f"{arch} exports, but onnxruntime's probabilities differ from "
                             f"torch's by {diff:.2g} (> {TOLERANCE:g})")
    return data


def store(path: Path, data: bytes) -> Path:
    """Write ``data`` to the cache file ``path`` atomically (never a half graph)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp:
            tmp.write_bytes(data)
    except (OSError, EngineError) as exc:
        raise CacheUnwritable(f"the ONNX graph cache {path.parent} cannot be written ({exc}); "
                              f"set RS_SEG_CACHE to a writable folder") from None
    return path


def runtime_graph(lm: LoadedModel, precision: str = "fp32") -> Path:
    """The cached runtime graph of ``lm`` (a torch model); the fp32 graph is exported on first
    use, the int8 one only by ``engine export --quantize int8``."""
    arch = lm.card["architecture"]
    if arch in NOT_EXPORTABLE:
        raise ModelFileError(f"{arch} cannot run through onnxruntime: {NOT_EXPORTABLE[arch]}")
    path = cached_path(lm, precision)
    if path.is_file():
        return path
    if precision == "int8":
        name = lm.path or "MODEL.rsmodel"
        raise ModelFileError(f"{Path(name).name} has no int8 graph on this computer; make it "
                             f"with: python -m engine export --model {name} --quantize int8 "
                             f"--calibration RASTER")
    return store(path, export_runtime_graph(lm))

