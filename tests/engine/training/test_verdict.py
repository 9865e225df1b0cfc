"""Training ends with a warning when the model learned nothing or validation cannot tell."""
from __future__ import annotations

import numpy as np

from engine.training import loop as loop_module
from engine.training import train
from engine.training.verdict import training_warnings
from tests.conftest import labelled_scene

NAMES = ["background", "building"]


def test_worse_than_the_most_frequent_class_is_a_warning():
    # 99.5 % predicted building where 95 % is background: overall accuracy 0.05
    matrix = np.array([[0, 950], [0, 50]])
    (warning,) = training_warnings(matrix, NAMES)
    assert warning.startswith("the model is worse than always predicting the most frequent "
                              "class ('background') on its validation cells (overall accuracy "
                              "0.050 vs 0.950)")


def test_a_single_class_validation_split_is_a_warning():
    (warning,) = training_warnings(np.array([[0, 0], [0, 400]]), NAMES)
    assert "a single class ('building')" in warning and "--val-fraction" in warning


def test_a_model_that_learned_says_nothing_and_no_pixels_say_so():
    assert training_warnings(np.array([[940, 10], [10, 40]]), NAMES) == []
    assert "no labelled pixels" in training_warnings(np.zeros((2, 2), int), NAMES)[0]


def test_training_logs_and_returns_the_warning_of_its_saved_model(tmp_path, monkeypatch):
    image, labels = labelled_scene(tmp_path, size=96)
    real = loop_module.validate
    worse = np.array([[0, 0, 90], [0, 0, 5], [0, 0, 5]])  # always the rarest class

    def validate(*args, **kwargs):
        loss, matrix = real(*args, **kwargs)
        return loss, worse
    monkeypatch.setattr(loop_module, "validate", validate)
    logs = []
    result = train(images=[str(image)], labels=[str(labels)], out=str(tmp_path / "m.rsmodel"),
                   tile=32, batch_size=4, epochs=1, samples_per_epoch=8, device="cpu",
                   hparams={"base": 4, "depth": 2}, progress=lambda f, m: logs.append(m))
    assert len(result["warnings"]) == 1 and "worse than always predicting" in result["warnings"][0]
    assert f"warning: {result['warnings'][0]}" in logs
