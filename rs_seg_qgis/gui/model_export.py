"""The Models tab's ONNX export: the engine's ``export_onnx`` (``python -m engine export``).

Any engine failure becomes :class:`ExportUnavailable` with the engine's sentence, so the
message bar says why (an architecture torch cannot export, torch or onnx not installed).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.jobs import EngineError


class ExportUnavailable(EngineError):
    """ONNX export cannot be done for this model here; the message says why."""


def export_onnx(model: str | Path, output: str | Path, progress: Any = None,
                cancelled: Any = None) -> Path:
    """Write ``model`` as ONNX to ``output`` or raise :class:`ExportUnavailable`."""
    from engine.formats.onnx.export import export_onnx as engine_export
    try:
        result = engine_export(model, output, progress=progress, cancelled=cancelled)
    except EngineError as exc:
        raise ExportUnavailable(f"ONNX export is not available for {Path(model).name}: "
                                f"{exc}") from None
    return Path(result["output"])
