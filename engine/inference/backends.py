"""Which runtime runs a model's network: ``--backend auto|torch|onnx``, ``--precision fp32|int8``.

``auto`` runs an ``.rsmodel`` through onnxruntime on the CPU when onnxruntime is installed and
the architecture exports (its graph cached by :mod:`engine.formats.onnx.runtime_graph`): the
same network at about half torch's time on a CPU.  It keeps torch on a GPU, for architectures
that do not export, without onnxruntime and when the cache cannot be written, each time with a
note in the log.  ``onnx`` insists (and fails with the reason); ``torch`` never converts.
``int8`` needs the model's quantised graph (``engine export --quantize int8``).
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from ..compute.onnx_runtime import MissingPackageError, onnxruntime, open_session
from ..compute.threads import ThreadPlan, apply_to_torch, plan_threads
from ..formats.card import LoadedModel, is_onnx
from ..formats.modelfile import load_model
from ..formats.onnx.model import OnnxNetwork
from ..formats.onnx.runtime_graph import (CacheUnwritable, PRECISIONS, runtime_graph,
                                          runtime_spec)
from ..jobs import InputError, Job, ModelFileError

BACKENDS = ("auto", "torch", "onnx")


def check_choice(backend: str, precision: str) -> None:
    """Raise :class:`InputError` for an unknown backend or precision, or a torch int8 run."""
    if backend not in BACKENDS:
        raise InputError(f"unknown backend '{backend}'; use one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}")
    if precision == "int8" and backend == "torch":
        raise InputError("int8 runs through onnxruntime; use --backend auto or onnx with "
                         "--precision int8")


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--precision`` of the commands that run a model."""
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="runtime of the network: auto (onnxruntime on the CPU when the model "
                        "exports, else torch), torch or onnx")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="int8: the quantised graph made by 'export --quantize int8'")


def backend_name(model: LoadedModel) -> str:
    """'onnxruntime' or 'torch': what runs ``model``'s network."""
    return "onnxruntime" if isinstance(model.network, OnnxNetwork) else "torch"


def load_for_inference(model: str | Path | LoadedModel, device: Any, backend: str = "auto",
                       precision: str = "fp32", job: Optional[Job] = None,
                       plan: Optional[ThreadPlan] = None) -> LoadedModel:
    """Load ``model`` for inference on ``device`` through the runtime ``backend`` chooses.

    ``plan`` sizes the intra-op threads (default :func:`engine.compute.threads.plan_threads`);
    the choice and the threads go to ``job``'s log.
    """
    check_choice(backend, precision)
    job = job or Job()
    plan = plan or plan_threads()
    if isinstance(model, LoadedModel):
        lm = model
    elif is_onnx(model):
        lm = load_model(model, device)
    else:
        apply_to_torch(plan)
        lm = load_model(model, device)
    if isinstance(lm.network, OnnxNetwork):
        if backend == "torch" or precision == "int8":
            raise InputError(f"{Path(lm.path or 'the model').name} is an ONNX file: it runs "
                             f"through onnxruntime as it is; leave --backend auto and "
                             f"--precision fp32")
        return lm
    explicit = backend == "onnx" or precision == "int8"
    why = _torch_reason(lm, device, backend)
    if why is None:
        try:
            lm = _through_onnxruntime(lm, device, precision, plan)
        except (ModelFileError, CacheUnwritable, MissingPackageError) as exc:
            if explicit:
                raise
            why = str(exc)
    elif explicit:
        raise InputError(f"--backend onnx / --precision int8 cannot be used here: {why}")
    job.log(f"backend: {backend_name(lm)} {precision}"
            + (f" (torch because {why})" if why and backend_name(lm) == "torch" else ""))
    job.log(plan.describe())
    return lm


def _torch_reason(lm: LoadedModel, device: Any, backend: str) -> Optional[str]:
    """Why the network stays on torch, or None to try onnxruntime."""
    if backend == "torch":
        return "--backend torch was asked for"
    if backend == "auto" and getattr(device, "type", "cpu") != "cpu":
        return f"the model runs on {device} (onnxruntime's speed-up is on the CPU)"
    if lm.card["task"] == "pretrained":
        return "a pre-trained backbone has no classes to predict"
    try:
        onnxruntime()
    except MissingPackageError:
        return "onnxruntime is not installed"
    return None


def _through_onnxruntime(lm: LoadedModel, device: Any, precision: str,
                         plan: ThreadPlan) -> LoadedModel:
    """``lm`` with its network replaced by an onnxruntime session of its cached graph."""
    path = runtime_graph(lm, precision)
    session, _ = open_session(path, str(path), device, plan.intra_op)
    return replace(lm, network=OnnxNetwork(session, runtime_spec(lm.card)))
