"""Training: data sampling, augmentation, losses, the loop, reports."""
from .loop import TrainConfig, TrainingError, train

__all__ = ["TrainConfig", "TrainingError", "train"]
