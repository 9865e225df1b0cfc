import numpy as np
import pytest
import rasterio

from engine.formats.modelfile import read_card
from engine.io.corrections import CORRECTIONS_LAYER, read_layer
from engine.inference.pipeline import predict
from engine.jobs import InputError
from engine.training.refine import format_score, refine, repredict
from engine.training.refine_labels import correction_key
from tests.engine.training.refine_helpers import box, corrections, scene

BUDGET = 2.0


def _left_is_1_right_is_2(tmp_path, name="c.gpkg"):
    """Eight corrections: bright left half → class 1, dark right half → class 2."""
    boxes = [(box(c, r, c + 16, r + 16), 1) for c in (4, 24) for r in (8, 40)]
    boxes += [(box(c, r, c + 16, r + 16), 2) for c in (56, 76) for r in (8, 40)]
    return corrections(tmp_path / name, boxes, reviewed=[box(0, 70, 40, 96)])


def test_round_writes_lineage_and_scores_on_held_out_corrections(tmp_path):
    image, parent = scene(tmp_path)
    gpkg = _left_is_1_right_is_2(tmp_path)
    out = tmp_path / "round1.rsmodel"
    logs = []
    result = refine(parent, image, gpkg, out, time_budget_s=BUDGET, device="cpu",
                    progress=lambda f, m: logs.append(m) if f < 0 else None)
    assert any(m.startswith("refine: BatchNorm statistics re-estimated on") for m in logs)
    card = read_card(out)
    lineage = card["lineage"]
    assert lineage["round"] == 1 and len(lineage["rounds"]) == 1
    assert lineage["parent"] == str(parent.resolve()) and len(lineage["parent_sha256"]) == 64
    assert lineage["corrections"] == 8 and lineage["held_out"] >= 1
    assert lineage["corrections_trained"] + lineage["held_out"] == 8
    assert lineage["confirmed_pixels"] > 0 and lineage["date"]
    s = lineage["scores"]
    assert s["held_out_pixels"] == lineage["held_out_pixels"] > 0
    assert 0.0 <= s["held_out"]["accuracy"] <= 1.0 and s["previous_round"] is None
    assert [c["value"] for c in card["classes"]] == [c["value"] for c in read_card(parent)["classes"]]
    assert "parent" in format_score(result)
    assert card["training"]["loss"] == "ce_dice"  # the unet's recipe names no loss of its own

    # the next round starts from this one: round 2, both rounds listed, previous score carried
    out2 = tmp_path / "round2.rsmodel"
    refine(out, image, gpkg, out2, time_budget_s=BUDGET, device="cpu", seed=1)
    second = read_card(out2)["lineage"]
    assert second["round"] == 2 and [r["round"] for r in second["rounds"]] == [1, 2]
    assert second["scores"]["previous_round"] == s["held_out"]
    # the corrections round 1 trained on are named, and round 2 knows which ones are new
    assert len(lineage["trained_corrections"]) == lineage["corrections_trained"]
    assert set(second["trained_corrections"]) & set(lineage["trained_corrections"])
    assert second["unseen_corrected_pixels"] < second["corrected_pixels"]


def test_refining_learns_the_corrections(tmp_path):
    """A round on consistent corrections beats the random parent on the pixels they cover."""
    image, parent = scene(tmp_path)
    gpkg = _left_is_1_right_is_2(tmp_path)
    out = tmp_path / "r.rsmodel"
    refine(parent, image, gpkg, out, time_budget_s=None, max_epochs=25, device="cpu",
           held_out_share=0)
    for model, name in ((parent, "before.tif"), (out, "after.tif")):
        predict(model, image, tmp_path / name, device="cpu")
    with rasterio.open(tmp_path / "before.tif") as b, rasterio.open(tmp_path / "after.tif") as a:
        before, after = b.read(1), a.read(1)
    truth = np.where(np.arange(96) < 48, 1, 2)[None, :].repeat(96, 0)
    assert (after == truth).mean() > max(0.8, (before == truth).mean())


def test_given_prediction_and_repredict_compare(tmp_path):
    image, parent = scene(tmp_path)
    gpkg = _left_is_1_right_is_2(tmp_path)
    pred, unsure = tmp_path / "p0.tif", tmp_path / "u0.tif"
    predict(parent, image, pred, uncertainty=unsure, device="cpu")
    out = tmp_path / "r.rsmodel"
    refine(parent, image, gpkg, out, prediction=pred, uncertainty=unsure, time_budget_s=BUDGET,
           device="cpu")
    result = repredict(out, image, tmp_path / "p1.tif", previous=pred,
                       difference=tmp_path / "d.tif", device="cpu")
    with rasterio.open(pred) as a, rasterio.open(tmp_path / "p1.tif") as b, \
            rasterio.open(tmp_path / "d.tif") as d:
        old, new, diff = a.read(1), b.read(1), d.read(1)
    changed = old != new
    assert result["compare"]["changed_pixels"] == int(changed.sum())
    assert result["compare"]["changed_m2"] == pytest.approx(changed.sum() * 0.25)
    assert (diff[changed] == new[changed]).all() and (diff[~changed] == 255).all()


def test_a_model_whose_recipe_names_a_loss_keeps_it(tmp_path, monkeypatch):
    import engine.training.refine as refine_module
    monkeypatch.setattr(refine_module, "recipe_of", lambda arch: {"loss": "dice"})
    image, parent = scene(tmp_path)
    refine(parent, image, _left_is_1_right_is_2(tmp_path), tmp_path / "r.rsmodel",
           time_budget_s=BUDGET, device="cpu", max_epochs=1)
    assert read_card(tmp_path / "r.rsmodel")["training"]["loss"] == "dice"


def test_class_the_model_lacks_offers_a_new_head(tmp_path):
    image, parent = scene(tmp_path)
    gpkg = corrections(tmp_path / "c.gpkg", [(box(4, 4, 40, 40), 7), (box(50, 50, 90, 90), 1)])
    with pytest.raises(InputError, match="--init-head new"):
        refine(parent, image, gpkg, tmp_path / "r.rsmodel", time_budget_s=BUDGET, device="cpu")
    assert not (tmp_path / "r.rsmodel").exists()
    refine(parent, image, gpkg, tmp_path / "r.rsmodel", time_budget_s=BUDGET, device="cpu",
           init_head="new")
    card = read_card(tmp_path / "r.rsmodel")
    assert 7 in [c["value"] for c in card["classes"]] and card["lineage"]["new_classes"] == [7]


def test_a_new_class_with_one_correction_is_trained_on_not_held_out(tmp_path):
    image, parent = scene(tmp_path)
    boxes = [(box(4, 4, 40, 40), 7)] + [(box(c, 50, c + 16, 90), 1) for c in (44, 60, 76)]
    gpkg = corrections(tmp_path / "c.gpkg", boxes)
    for seed in range(4):
        refine(parent, image, gpkg, tmp_path / "r.rsmodel", time_budget_s=BUDGET, device="cpu",
               init_head="new", seed=seed, max_epochs=1)
        lineage = read_card(tmp_path / "r.rsmodel")["lineage"]
        with rasterio.open(image) as ds:
            new_class = correction_key(read_layer(gpkg, CORRECTIONS_LAYER, ds.crs, "class")[0],
                                       ds.transform)
        assert lineage["held_out"] == 1 and new_class in lineage["trained_corrections"]


def test_outside_corrections_are_named_and_skipped(tmp_path):
    image, parent = scene(tmp_path)
    boxes = [(box(4, 4, 40, 40), 1), (box(50, 50, 90, 90), 2), (box(500, 500, 520, 520), 1)]
    gpkg = corrections(tmp_path / "c.gpkg", boxes)
    logs = []
    result = refine(parent, image, gpkg, tmp_path / "r.rsmodel", time_budget_s=BUDGET,
                    device="cpu", progress=lambda f, m: logs.append(m) if f < 0 else None)
    assert any("correction(s) 3 lie outside image.tif and are skipped" in m for m in logs)
    assert result["corrections"] == 2


def test_too_few_pixels_to_hold_out_still_trains(tmp_path):
    image, parent = scene(tmp_path)
    gpkg = corrections(tmp_path / "c.gpkg", [(box(4, 4, 8, 8), 1)])
    result = refine(parent, image, gpkg, tmp_path / "r.rsmodel", time_budget_s=BUDGET,
                    device="cpu")
    assert any("score on held-out corrections is not available this round" in n
               for n in result["notes"])
    assert result["scores"] == {} and (tmp_path / "r.rsmodel").exists()
    assert "not available" in format_score(result)


def test_a_round_leaves_only_the_model_and_cancel_leaves_nothing(tmp_path):
    from engine.jobs import Cancelled
    image, parent = scene(tmp_path)
    gpkg = _left_is_1_right_is_2(tmp_path)
    before = set(tmp_path.iterdir())
    asked = []

    def cancelled():
        asked.append(1)
        return len(asked) > 3

    with pytest.raises(Cancelled):
        refine(parent, image, gpkg, tmp_path / "r.rsmodel", time_budget_s=BUDGET, device="cpu",
               cancelled=cancelled)
    assert set(tmp_path.iterdir()) == before
    refine(parent, image, gpkg, tmp_path / "r.rsmodel", time_budget_s=BUDGET, device="cpu")
    assert set(tmp_path.iterdir()) - before == {tmp_path / "r.rsmodel"}


def test_the_budget_holds_for_the_whole_round(monkeypatch):
    """Training gets what the round's start left of the budget, less the scoring share."""
    import engine.training.refine as refine_module
    monkeypatch.setattr(refine_module.time, "perf_counter", lambda: 130.0)
    assert refine_module._training_budget(120.0, clock=100.0) == pytest.approx(
        120.0 * (1 - refine_module.SCORING_SHARE) - 30.0)
    assert refine_module._training_budget(20.0, clock=100.0) == refine_module.MIN_TRAIN_S
    assert refine_module._training_budget(None, clock=100.0) is None


def test_held_out_scoring_predicts_only_around_the_held_out_corrections():
    from engine.training.refine import _score_boxes
    held = np.full((200, 300), 255, np.uint8)
    held[10:20, 10:20] = 1
    held[30:40, 25:35] = 2       # near the first: one box
    held[150:160, 250:260] = 1   # far away: its own box
    boxes = sorted(_score_boxes(held, 8))
    assert boxes == [(2, 2, 48, 43), (142, 242, 168, 268)]
