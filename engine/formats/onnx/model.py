"""ONNX models as first-class models: :func:`load_onnx` returns an :class:`OnnxModel`, usable
wherever an :class:`engine.formats.modelfile.LoadedModel` is (``predict``, ``change``, ``segment_at``).

Its ``network`` is an :class:`OnnxNetwork`: a callable mapping the pipeline's named input
batches to class probabilities at the window size, so the one sliding-window pipeline (reader,
stitcher, writer) runs it.  Inputs and outputs are numpy arrays without torch; with torch they
are tensors (host copies around onnxruntime).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from ...compute import backend as xp
from ...jobs import InputError
from ..card import LoadedModel, validate_card
from .graph import (Graph, existing, graph_from_session, onnx_package, probe_activation,
                    read_graph)
from .metadata import Overrides, check_inputs, chosen_output, describe, graph_tile
from ...compute.onnx_runtime import open_session


class OnnxNetwork:
    """An onnxruntime session wrapped as the pipeline's network (see :class:`metadata.Spec`)."""

    def __init__(self, session: Any, spec: Mapping[str, Any]) -> None:
        self.session = session
        self.spec = dict(spec)
        self._affine = {g: (np.asarray(spec["scale"][g], np.float32)[None, :, None, None],
                            np.asarray(spec["offset"][g], np.float32)[None, :, None, None])
                        for g in spec["inputs"]}
        self._identity = {g: bool(np.all(a == 1) and np.all(b == 0))
                          for g, (a, b) in self._affine.items()}

    def __call__(self, inputs: Mapping[str, Any]) -> Any:
        """B×K×T×T probabilities for the named B×C×T×T input batches (numpy or torch)."""
        first = next(iter(inputs.values()))
        feeds = {}
        for group, name in self.spec["inputs"].items():
            x = np.asarray(xp.to_numpy(inputs[group]), dtype=np.float32)
            if not self._identity[group]:
                scale, offset = self._affine[group]
                x = x * scale + offset
            feeds[name] = np.ascontiguousarray(x)
        out = self._probabilities(self._run(feeds), int(first.shape[-1]))
        if xp.is_tensor(first):
            return xp.torch_module().from_numpy(out).to(first.device)
        return out

    def _run(self, feeds: Dict[str, np.ndarray]) -> np.ndarray:
        """Run the graph, in chunks of its batch size when that is fixed."""
        n = next(iter(feeds.values())).shape[0]
        fixed = self.spec.get("batch")
        if not fixed or fixed == n:
            return self._session_run(feeds)
        parts = []
        for start in range(0, n, fixed):
            chunk = {k: v[start:start + fixed] for k, v in feeds.items()}
            short = fixed - next(iter(chunk.values())).shape[0]
            if short:  # the graph takes exactly `fixed` windows: pad the last chunk
                chunk = {k: np.concatenate([v, np.zeros((short,) + v.shape[1:], v.dtype)])
                         for k, v in chunk.items()}
            parts.append(self._session_run(chunk)[:fixed - short])
        return np.concatenate(parts)

    def _session_run(self, feeds: Dict[str, np.ndarray]) -> np.ndarray:
        """The chosen output for ``feeds``; onnxruntime's failures as one sentence."""
        try:
            return self.session.run([self.spec["output"]], feeds)[0]
        except Exception as exc:  # onnxruntime's own exception types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            n = next(iter(feeds.values())).shape[0]
            raise InputError(f"the ONNX model failed on a batch of {n} window(s) "
                             f"({first[:200]}); try --batch-size 1 / BATCH_SIZE 1, or the "
                             f"model's own tile size") from None

    def _probabilities(self, out: np.ndarray, tile: int) -> np.ndarray:
        """The graph output as B×K×T×T class probabilities."""
        spec = self.spec
        out = np.asarray(out, dtype=np.float32)
        if not spec["channel_axis"]:
            out = out[:, None]
        margin = spec["margin"]
        if out.ndim != 4 or out.shape[-1] != tile - 2 * margin or out.shape[-2] != out.shape[-1]:
            raise InputError(f"the ONNX model gave an output of shape {list(out.shape)} for "
                             f"{tile} px windows (expected {tile - 2 * margin} px); run it with "
                             f"its own tile size (see 'python -m engine info')")
        activation = spec["activation"]
        if activation == "softmax":
            out = np.exp(out - out.max(axis=1, keepdims=True))
            out /= out.sum(axis=1, keepdims=True)
        elif activation == "sigmoid":
            out = 1.0 / (1.0 + np.exp(-out))
        if spec["binary"]:
            p = out[:, :1]
            out = np.concatenate([1.0 - p, p], axis=1)
        if margin:  # unpredicted window edges: replicate; the stitcher gives them ~no weight
            out = np.pad(out, ((0, 0), (0, 0), (margin, margin), (margin, margin)), mode="edge")
        return np.ascontiguousarray(out, dtype=np.float32)


@dataclass
class OnnxModel(LoadedModel):
    """A loaded ONNX model: its card (with the ``onnx`` runtime section) and its network."""

    graph: Optional[Graph] = None

    @property
    def providers(self) -> Sequence[str]:
        """The onnxruntime execution providers the session runs on."""
        return self.card["onnx"]["providers"]


def load_onnx(path: str | Path, device: Any = "cpu", classes: Optional[Sequence[str]] = None,
              tile: Optional[int] = None, input_scale: Optional[float] = None,
              overrides: Optional[Overrides] = None) -> OnnxModel:
    """Load an ONNX model for ``device``; ``classes``/``tile``/``input_scale`` (or a whole
    :class:`Overrides`) override what its metadata and graph say (or stand in where they say
    nothing)."""
    if isinstance(device, str):
        from ...compute.devices import resolve_device
        device = resolve_device(device)
    p = existing(path)
    onnx = onnx_package()
    graph = read_graph(p, onnx) if onnx is not None else None
    session, providers = open_session(p, str(p), device)
    if graph is None:  # onnxruntime-only install: the session describes the graph
        graph = graph_from_session(p, session)
    check_inputs(graph)
    overrides = overrides or Overrides(classes, tile, input_scale)
    size = graph_tile(graph, overrides)
    shape, batch_one = _output_shape(graph, session, size, chosen_output(graph, overrides.output))
    card = describe(graph, shape, size, overrides)
    card["onnx"]["providers"] = providers
    if batch_one and card["onnx"]["batch"] is None:
        card["onnx"]["batch"] = 1
        card["onnx"]["notes"] = [f"{graph.path.name} declares a dynamic batch but only runs one "
                                 f"window at a time (its graph reshapes to batch 1); running it "
                                 f"at batch 1"]
    validate_card(card, source=graph.path.name)
    return OnnxModel(card=card, network=OnnxNetwork(session, card["onnx"]), path=graph.path,
                     graph=graph)


def _output_shape(graph: Graph, session: Any, tile: int, name: str) -> Tuple[Sequence[int], bool]:
    """Output ``name``'s shape for one ``tile`` window, from the graph or by a probe run, and
    whether a graph with a dynamic batch axis in fact only runs batches of one.

    The probe also decides whether an output without a final Softmax/Sigmoid already is
    probabilities (Deepness's dummy models end in other ops; a regression model does not).  It
    runs two windows when the batch axis is dynamic: graphs that reshape to batch 1 inside
    fail (or answer one map) there, and then run one window at a time.
    """
    out = next(o for o in graph.outputs if o.name == name)
    static_input = all(d is not None for d in graph.inputs[0].fixed[1:])
    known = graph.activations.get(name) in ("Softmax", "Sigmoid")
    dynamic = graph.inputs[0].fixed[0] is None
    if static_input and all(isinstance(d, int) for d in out.shape[1:]) and known and not dynamic:
        return [1] + list(out.shape[1:]), False
    batch = graph.inputs[0].fixed[0] or 2
    try:
        result = _probe(graph, session, tile, name, batch)
        one = dynamic and result.shape[0] != batch
    except InputError:
        if not dynamic:
            raise
        result, one = _probe(graph, session, tile, name, 1), True
    if not known:
        graph.activations[name] = probe_activation(result)
    return [1] + list(result.shape[1:]), one


def _probe(graph: Graph, session: Any, tile: int, name: str, batch: int) -> np.ndarray:
    """Output ``name`` for a random batch of ``batch`` ``tile``-px windows."""
    rng = np.random.default_rng(0)  # 0–1 inputs, like real windows: logits leave [0, 1]
    feeds = {t.name: rng.random((batch, int(t.shape[1]), tile, tile), dtype=np.float32)
             for t in graph.inputs}
    try:
        return np.asarray(session.run([name], feeds)[0])
    except Exception as exc:  # onnxruntime's own exception types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"{graph.path.name} does not run on {tile}×{tile} windows "
                         f"({first[:200]}); give a tile size it accepts with --tile") from None


def check_tile(spec: Mapping[str, Any], tile: int) -> None:
    """Raise :class:`InputError` unless the graph can run ``tile``×``tile`` windows."""
    size = spec.get("size")
    if size is not None and tile != size:
        raise InputError(f"this ONNX model only takes {size}×{size} windows; use --tile {size} "
                         f"(or export it with a dynamic input size)")

