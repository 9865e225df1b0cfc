"""ONNX export of a model file, when torch's exporter can do it for that network.

This belongs in the engine (``python -m engine export``); until the engine offers
``engine.export.export_onnx``, this thin bridge calls ``torch.onnx.export`` on the loaded
network.  Any failure becomes :class:`ExportUnavailable` with a sentence for the user.
"""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any, Optional

from engine.jobs import EngineError

from ..deps import python_command


class ExportUnavailable(EngineError):
    """ONNX export cannot be done for this model here; the message says why."""


def export_onnx(model: str | Path, output: str | Path, progress: Any = None,
                cancelled: Any = None) -> Path:
    """Write ``model`` as ONNX to ``output`` or raise :class:`ExportUnavailable`."""
    name = Path(model).name
    try:
        engine_export = importlib.import_module("engine.export")
    except ImportError:
        engine_export = None
    if engine_export is not None and hasattr(engine_export, "export_onnx"):
        try:
            return Path(engine_export.export_onnx(model, output))
        except Exception as exc:  # the engine says why, in its words
            raise ExportUnavailable(f"ONNX export is not available for {name}: {exc}") from None
    missing = [m for m in ("torch", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportUnavailable(
            f"ONNX export is not available for {name}: torch's exporter needs "
            f"{' and '.join(missing)} (install with: {python_command()} -m pip install "
            f"{' '.join(missing)} onnxscript)")
    return _torch_export(model, Path(output), name)


def _torch_export(model: str | Path, output: Path, name: str) -> Path:
    import torch
    from engine.modelfile import load_model
    architecture = "?"
    tmp = output.with_name(output.name + ".part")
    try:
        lm = load_model(model, "cpu")
        architecture = lm.card["architecture"]
        tile = int(lm.card.get("tile_size") or 256)
        inputs = {group: torch.zeros(1, len(spec["bands"]), tile, tile)
                  for group, spec in lm.card["inputs"].items()}
        axes = {0: "batch", 2: "height", 3: "width"}
        torch.onnx.export(lm.network, (), str(tmp), kwargs=inputs, dynamo=False,
                          input_names=list(inputs), output_names=["logits"],
                          dynamic_axes={**{g: axes for g in inputs}, "logits": axes})
        tmp.replace(output)
    except Exception as exc:  # unsupported operator, dynamic control flow, …
        tmp.unlink(missing_ok=True)
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise ExportUnavailable(f"ONNX export is not available for {name} ({architecture}): "
                                f"{first}") from None
    return output


def can_export() -> Optional[str]:
    """None when the exporter's modules are installed, else why not (cheap, no import)."""
    missing = [m for m in ("torch", "onnx") if importlib.util.find_spec(m) is None]
    return f"needs {' and '.join(missing)}" if missing else None
