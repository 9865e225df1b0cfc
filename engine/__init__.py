"""RS Seg engine: segmentation and change detection of remote-sensing rasters.

Never imports qgis or PyQt.  Heavy modules (torch) load lazily, so ``import engine`` is cheap and
works without torch for error reporting.
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "load_model": ("formats.modelfile", "load_model"),
    "save_model": ("formats.modelfile", "save_model"),
    "read_card": ("formats.modelfile", "read_card"),
    "predict": ("inference.pipeline", "predict"),
    "detect_change": ("analysis.change", "detect_change"),
    "train": ("training", "train"),
    "evaluate": ("analysis.evaluation", "evaluate"),
    "vectorize": ("analysis.vectorize", "vectorize"),
    "pretrain": ("training.pretrain", "pretrain"),
    "derive": ("analysis.derive", "derive"),
    "segment_at": ("click.point", "segment_at"),
    "export_onnx": ("formats.onnx.export", "export_onnx"),
    "load_onnx": ("formats.onnx.model", "load_onnx"),
    "sam_segment_at": ("click.sam_click", "sam_segment_at"),
    "load_backbone": ("weights", "load_backbone"),
    "init_model": ("formats.create", "init_model"),
    "predict_many": ("inference.batch", "predict_many"),
    "make_sample": ("sample", "make_sample"),
    "EngineError": ("jobs", "EngineError"),
    "Cancelled": ("jobs", "Cancelled"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
