"""Training: data sampling, augmentation, losses, the loop, reports.

``train``, ``TrainConfig`` and ``TrainingError`` load lazily, so the torch-free helpers here
(report and checkpoint file names) can be imported by the QGIS plugin without loading torch.
"""
_LAZY = {"TrainConfig", "TrainingError", "train"}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        from . import loop
        return getattr(loop, name)
    raise AttributeError(f"module 'engine.training' has no attribute {name!r}")
