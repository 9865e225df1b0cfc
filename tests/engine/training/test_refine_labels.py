"""The labels of a refinement round: what the review shows of the parent decides its
pseudo-labels."""
import numpy as np
import pytest
from affine import Affine
from rasterio.windows import Window

from engine.io.corrections import Feature
from engine.training.refine_labels import (PSEUDO_RATIO, correction_key, hold_out,
                                           pseudo_margin, round_labels)

SIZE = 200
GRID = Affine(1, 0, 0, 0, -1, 0)  # pixel (row, col) = (−y, x)


def _square(fid: int, x0: int, y0: int, side: int, value: int = 1) -> Feature:
    x1, y1 = x0 + side, y0 + side
    return Feature(fid=fid, geometry={"type": "Polygon", "coordinates": [
        [(x0, -y0), (x1, -y0), (x1, -y1), (x0, -y1), (x0, -y0)]]}, value=value)


def _labels(corrections, prediction, uncertainty, reviewed=(), **kw):
    return round_labels(corrections, [f.value for f in corrections], list(reviewed),
                        Window(0, 0, SIZE, SIZE), GRID, prediction, uncertainty, 255,
                        held_out_share=0, **kw)


@pytest.mark.parametrize("parent_right", [1.0, 0.5])
def test_a_parent_sure_and_right_gets_pseudo_labels_by_its_agreement(parent_right):
    """Sure everywhere: right on all the corrections → the full ratio at the lowest margin;
    right on half of them while as sure → below the precision asked at every margin: none."""
    prediction = np.full((SIZE, SIZE), 2, np.uint8)
    prediction[:20, :int(20 * parent_right)] = 1
    sure = np.zeros((SIZE, SIZE), np.uint8)
    labels = _labels([_square(1, 0, 0, 20)], prediction, sure)
    assert labels.counts["parent_agreement"] == pytest.approx(parent_right)
    if parent_right == 1.0:
        assert labels.counts["pseudo_margin"] == 0.5
        assert labels.counts["pseudo_pixels"] == int(PSEUDO_RATIO * 400)
    else:
        assert labels.counts["pseudo_margin"] is None and labels.counts["pseudo_pixels"] == 0
        assert any("no pseudo-labels" in n for n in labels.notes)
    assert (labels.train != 255).sum() == 400 + labels.counts["pseudo_pixels"]
    fixed = _labels([_square(1, 0, 0, 20)], prediction, sure, pseudo_scaled=False)
    assert fixed.counts["pseudo_pixels"] == int(PSEUDO_RATIO * 400)


def test_pseudo_labels_come_only_from_the_confidence_the_parent_earned():
    """Right where very sure (uncertainty 10), wrong where fairly sure (100): the pseudo-labels
    come from the very sure pixels alone, and their number follows the agreement (half)."""
    prediction = np.full((SIZE, SIZE), 1, np.uint8)
    uncertainty = np.full((SIZE, SIZE), 10, np.uint8)
    uncertainty[:, 100:] = 100
    prediction[:20, 10:20] = 2                      # wrong on the correction's right half …
    uncertainty[:20, 10:20] = 100                   # … where it was only fairly sure
    labels = _labels([_square(1, 0, 0, 20)], prediction, uncertainty)
    assert labels.counts["parent_agreement"] == pytest.approx(0.5)
    assert labels.counts["pseudo_margin"] == 0.7   # 1 − 100/254 = 0.61 < 0.7 ≤ 1 − 10/254
    pseudo = labels.train != 255
    pseudo[:20, :20] = False
    assert pseudo.sum() == labels.counts["pseudo_pixels"] == int(PSEUDO_RATIO * 0.5 * 400)
    assert (uncertainty[pseudo] == 10).all()


def test_confirmed_places_count_as_the_parent_right():
    """An analyst who corrects only the parent's mistakes but marks the places they checked:
    the confirmed pixels are evidence the parent is right, for the agreement and the margin."""
    prediction = np.full((SIZE, SIZE), 2, np.uint8)
    sure = np.zeros((SIZE, SIZE), np.uint8)
    correction = _square(1, 0, 0, 20)              # 400 px, all wrong
    alone = _labels([correction], prediction, sure)
    assert alone.counts["parent_agreement"] == 0.0 and alone.counts["pseudo_pixels"] == 0
    checked = _labels([correction], prediction, sure, reviewed=[_square(9, 0, 0, 100)])
    assert checked.counts["confirmed_pixels"] == 100 * 100 - 400
    assert checked.counts["parent_agreement"] == pytest.approx(9600 / 10000)
    assert checked.counts["pseudo_margin"] == 0.5 and checked.counts["pseudo_pixels"] > 0


def test_pseudo_margin_needs_enough_evidence_at_a_margin():
    right = np.array([True] * 63 + [False] * 100)
    uncertainty = np.array([0] * 63 + [200] * 100, np.uint8)
    assert pseudo_margin(right, uncertainty) is None  # 63 sure pixels, all right: too few
    assert pseudo_margin(np.append(right, True), np.append(uncertainty, 0)) == 0.5


def test_corrections_the_parent_learned_are_not_evidence_of_its_confidence():
    """Right and sure on a correction it trained on, sure and wrong on a new one: only the new
    one says how far its confidence goes, so there are no pseudo-labels; the trained keys are
    those of both corrections (none held out)."""
    prediction = np.full((SIZE, SIZE), 1, np.uint8)
    prediction[100:110, 100:110] = 2
    sure = np.zeros((SIZE, SIZE), np.uint8)
    old, new = _square(1, 0, 0, 60), _square(2, 100, 100, 10)
    blind = _labels([old, new], prediction, sure)
    assert blind.counts["parent_agreement"] == round(3600 / 3700, 4)
    assert blind.counts["pseudo_margin"] == 0.5
    told = _labels([old, new], prediction, sure, learned={correction_key(old, GRID)})
    assert told.counts["unseen_corrected_pixels"] == 100
    assert told.counts["parent_agreement"] == 0.0 and told.counts["pseudo_pixels"] == 0
    assert told.trained_keys == [correction_key(old, GRID), correction_key(new, GRID)]
    again = _labels([old], prediction, sure, learned={correction_key(old, GRID)})
    assert again.counts["pseudo_margin"] == 0.5  # nothing new: all the corrections judge it


def test_a_correction_key_follows_class_and_geometry():
    a = _square(1, 0, 0, 10)
    assert correction_key(a, GRID) == correction_key(_square(7, 0, 0, 10), GRID)  # another fid
    assert correction_key(a, GRID) != correction_key(_square(1, 0, 0, 10, value=2), GRID)
    assert correction_key(a, GRID) != correction_key(_square(1, 1, 0, 10), GRID)


def test_a_correction_saved_again_by_another_tool_keeps_its_key():
    """Another start point, the other orientation and float noise in the coordinates: the
    same polygon on the raster's pixels."""
    ring = _square(1, 0, 0, 10).geometry["coordinates"][0]
    again = [(x + 1e-9 * GRID.a, y - 3e-10 * GRID.a) for x, y in (ring[2:-1] + ring[:3])[::-1]]
    resaved = Feature(fid=4, geometry={"type": "Polygon", "coordinates": [again]}, value=1)
    assert correction_key(resaved, GRID) == correction_key(_square(1, 0, 0, 10), GRID)


@pytest.mark.parametrize("seed", range(4))
def test_only_corrections_new_to_the_parent_are_held_out(seed):
    """Held-out corrections the parent trained on would flatter its score next to the new
    model's: only new ones are held out, and at least one new one still trains."""
    prediction = np.full((SIZE, SIZE), 1, np.uint8)
    sure = np.zeros((SIZE, SIZE), np.uint8)
    squares = [_square(i + 1, 20 * i, 0, 16) for i in range(8)]
    learned = {correction_key(f, GRID) for f in squares[:5]}
    labels = round_labels(squares, [1] * 8, [], Window(0, 0, SIZE, SIZE), GRID, prediction,
                          sure, 255, held_out_share=0.25, seed=seed, learned=learned)
    held = {f.fid for f in squares if correction_key(f, GRID) not in labels.trained_keys}
    assert held and held <= {6, 7, 8} and len(held) < 3
    assert labels.counts["unseen_corrected_pixels"] == (3 - len(held)) * 256
    alone = round_labels(squares[:6], [1] * 6, [], Window(0, 0, SIZE, SIZE), GRID, prediction,
                         sure, 255, held_out_share=0.25, seed=seed, learned=learned)
    assert alone.counts["held_out"] == 0  # one new correction: it trains, no score
    assert any("new to the model" in n for n in alone.notes)


@pytest.mark.parametrize("seed", range(5))
def test_held_out_share_is_whole_polygons_at_most_the_share(seed):
    pixels = np.array([1296, 1600, 1440, 1440, 0, 300])
    held, why = hold_out(pixels, [1] * 6, np.ones(6, bool), 0.25, seed)
    assert why is None and held and 4 not in held
    assert pixels[held].sum() <= 0.25 * pixels.sum() or len(held) == 1
    assert len(held) < 5  # at least one correction stays for training


@pytest.mark.parametrize("seed", range(8))
def test_a_class_keeps_its_only_correction_for_training(seed):
    """Forest's one correction trains; each class gives at most its share (the first held
    polygon aside)."""
    pixels = np.array([400, 400, 400, 400, 900, 400, 400])
    values = [1, 1, 1, 1, 6, 2, 2]
    held, why = hold_out(pixels, values, np.ones(7, bool), 0.25, seed)
    assert why is None and held and 4 not in held
    for c in {1, 2} - {values[held[0]]}:
        of_class = np.array(values) == c
        assert pixels[[i for i in held if of_class[i]]].sum() <= 0.25 * pixels[of_class].sum()


def test_a_class_learned_before_may_lose_its_new_correction_to_the_hold_out():
    pixels = np.array([900, 400, 400])
    held, _ = hold_out(pixels, [6, 6, 1], np.array([True, False, True]), 0.5, 0)
    assert held == [0]  # forest still trains on the correction the parent learned


def test_only_single_corrections_per_class_hold_nothing_out_and_say_why():
    held, why = hold_out(np.array([900, 400, 400]), [6, 1, 2], np.ones(3, bool), 0.25, 0)
    assert held == [] and "single correction" in why and "not available" in why
