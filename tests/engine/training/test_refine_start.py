import numpy as np
import pytest
from engine.formats.modelfile import load_model, read_card
from engine.jobs import InputError
from engine.training.refine import refine
from engine.training.refine_start import FRESH_BELOW, check_start, fresh_reason
from tests.conftest import make_model, write_raster
from tests.engine.training.refine_helpers import ORIGIN, RES, box, corrections, scene

CARD = {"architecture": "unet", "training": {"backbone": None}}


def test_auto_starts_fresh_only_from_a_model_from_elsewhere_that_is_mostly_wrong():
    reason = fresh_reason("auto", CARD, 0.2)
    assert "20 %" in reason and "--start parent" in reason
    assert fresh_reason("auto", CARD, FRESH_BELOW) is None
    # a model of this loop already learned these corrections: it is fine-tuned
    assert fresh_reason("auto", {**CARD, "lineage": {"rounds": [{"round": 1}]}}, 0.0) is None
    # a published backbone's encoder is knowledge worth keeping
    assert fresh_reason("auto", {**CARD, "training": {"backbone": "resnet18.pth"}}, 0.0) is None


def test_the_user_choice_wins():
    assert fresh_reason("parent", CARD, 0.0) is None
    assert "--start fresh" in fresh_reason("fresh", {**CARD, "lineage": {"rounds": [{}]}}, 1.0)
    with pytest.raises(InputError, match="--start must be one of auto, parent, fresh"):
        check_start("scratch")


def _parent_says(tmp_path, name: str, value: int):
    """A class raster in which the parent predicts ``value`` everywhere, confidently."""
    shape = (1, 96, 96)
    pred = write_raster(tmp_path / f"{name}.tif", np.full(shape, value, np.uint8),
                        origin=ORIGIN, res=RES, nodata=255)
    unsure = write_raster(tmp_path / f"{name}_u.tif", np.zeros(shape, np.uint8),
                          origin=ORIGIN, res=RES)
    return pred, unsure


def _weights(path):
    return {k: v.detach() for k, v in load_model(path).network.named_parameters()}


def _max_change(a, b) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_a_round_from_a_parent_wrong_on_every_correction_starts_fresh(tmp_path):
    image, _ = scene(tmp_path)
    # seeded apart from refine's seed, so a fresh network cannot share the parent's weights
    parent = make_model(tmp_path / "p.rsmodel", bands=3, classes=3, base=4, depth=2, tile=32,
                        overlap=8, seed=7)
    gpkg = corrections(tmp_path / "c.gpkg", [(box(4, 8, 36, 40), 1), (box(56, 8, 88, 40), 1)])
    wrong = _parent_says(tmp_path, "wrong", 3)
    still = dict(time_budget_s=None, max_epochs=1, lr=1e-12, device="cpu", held_out_share=0)

    out = tmp_path / "fresh.rsmodel"
    result = refine(parent, image, gpkg, out, prediction=wrong[0], uncertainty=wrong[1], **still)
    card = read_card(out)
    assert card["lineage"]["start"] == "fresh" and card["lineage"]["parent_agreement"] == 0.0
    assert any("0 % of the reviewed pixels right" in n for n in result["notes"])
    assert (card["architecture"], card["hparams"]) == (read_card(parent)["architecture"],
                                                       read_card(parent)["hparams"])
    assert _max_change(_weights(out), _weights(parent)) > 0.05  # random weights, not the parent's

    kept = tmp_path / "kept.rsmodel"
    refine(parent, image, gpkg, kept, prediction=wrong[0], uncertainty=wrong[1], start="parent",
           **still)
    assert read_card(kept)["lineage"]["start"] == "parent"
    assert _max_change(_weights(kept), _weights(parent)) < 1e-6

    # round 2 fine-tunes round 1 however wrong it is: it learned these corrections already
    second = tmp_path / "round2.rsmodel"
    refine(out, image, gpkg, second, prediction=wrong[0], uncertainty=wrong[1], **still)
    assert read_card(second)["lineage"]["start"] == "parent"
    assert _max_change(_weights(second), _weights(out)) < 1e-6


def test_a_parent_right_on_most_corrections_is_fine_tuned(tmp_path):
    image, parent = scene(tmp_path)
    gpkg = corrections(tmp_path / "c.gpkg", [(box(4, 8, 36, 40), 1), (box(56, 8, 88, 40), 1)])
    right = _parent_says(tmp_path, "right", 1)
    out = tmp_path / "r.rsmodel"
    result = refine(parent, image, gpkg, out, prediction=right[0], uncertainty=right[1],
                    time_budget_s=None, max_epochs=1, device="cpu", held_out_share=0)
    assert read_card(out)["lineage"]["start"] == "parent"
    assert not any("fresh" in n for n in result["notes"])
