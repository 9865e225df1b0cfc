from engine.inference.guard import empty_change_note, fraction_note, input_notes
from engine.io.gsd import GsdPlan
from engine.io.radiometry import BandStats

import numpy as np


def _card(mean, std, mode="dataset", status="trained"):
    return {"inputs": {"image": {"mean": mean, "std": std, "normalisation": mode,
                                 "bands": [{"name": "R"}]}},
            "training": {"status": status}}


def _stats(mean):
    px = np.random.default_rng(0).normal(mean, 5, (1, 5000))
    return BandStats.of(px)


def test_a_coarser_image_is_named_with_both_gsds():
    notes = input_notes(_card([100.0], [20.0]), "image", None, GsdPlan(3.0, 1.5, 0.5))
    assert notes == ["this image is 3.0× coarser than the model's training data (1.5 m vs "
                     "0.5 m); resampling to 0.5 m"]


def test_shifted_band_means_are_reported_in_sigma_with_advice():
    notes = input_notes(_card([100.0], [20.0]), "image", _stats(148.0), None)
    assert len(notes) == 1
    assert "differ from the model's training data by 2.4 σ" in notes[0]
    assert "--normalisation image" in notes[0]
    image_mode = input_notes(_card([0.0], [1.0], "image") | {"inputs": {"image": {
        "mean": [0.0], "std": [1.0], "normalisation": "image", "raw_statistics":
        {"mean": [100.0], "std": [20.0]}}}}, "image", _stats(160.0), None)
    assert "normalises each image (image)" in image_mode[0] and "train --init" in image_mode[0]


def test_close_inputs_and_untrained_models_give_no_notes():
    assert input_notes(_card([100.0], [20.0]), "image", _stats(110.0), GsdPlan(1.0, 0.5, 0.5)) == []
    assert input_notes(_card([100.0], [20.0], status="untrained (random weights)"), "image",
                       _stats(300.0), None) == []


def test_empty_change_map_warns_only_when_cva_finds_change():
    warning = empty_change_note(0.0, 0.063)
    assert warning.startswith("the change model marked 0.00 % of the area as changed while "
                              "change vector analysis flags 6.3 % of a sample")
    assert empty_change_note(0.0, 0.001) is None
    assert empty_change_note(0.05, 0.2) is None


def test_fraction_note_lists_every_class():
    assert fraction_note({"no change": 0.9, "change": 0.1}) == \
        "area per class: no change 90.0 %, change 10.0 %"
