"""Confusion matrices, scores and Olofsson et al. (2014) area-based accuracy."""
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.jobs import InputError
from engine.analysis.metrics import (ConfusionMatrix, area_based_accuracy, change_scores,
                            confusion_matrix, scores)


def assert_json_clean(obj):
    """Serialisable with plain types and no NaN/inf anywhere."""
    json.dumps(obj, allow_nan=False)


# ------------------------------------------------------------------ confusion matrix

def test_hand_made_confusion_matrix_rows_are_reference():
    ref = np.array([[0, 0, 1],
                    [1, 2, 2]])
    pred = np.array([[0, 1, 1],
                     [2, 2, 0]])
    # pairs (ref, pred): (0,0) (0,1) (1,1) (1,2) (2,2) (2,0)
    expected = np.array([[1, 1, 0],
                         [0, 1, 1],
                         [1, 0, 1]])
    m = confusion_matrix(ref, pred, 3)
    assert m.dtype == np.int64 and m.shape == (3, 3)
    np.testing.assert_array_equal(m, expected)
    m_torch = confusion_matrix(torch.from_numpy(ref), torch.from_numpy(pred), 3)
    np.testing.assert_array_equal(m_torch, expected)


def test_ignore_index_valid_mask_and_out_of_range_are_not_counted():
    ref = np.array([0, 1, 255, 1, 0, -1, 2, 1, 0])
    pred = np.array([0, 1, 1, 0, 7, 0, 2, -3, 1])
    valid = np.array([1, 1, 1, 1, 1, 1, 0, 1, 1], bool)
    # Counted: (0,0) (1,1) (1,0) (0,1); dropped: ignore 255, pred 7, ref -1, invalid (2,2),
    # pred -3.
    expected = np.array([[1, 1, 0],
                         [1, 1, 0],
                         [0, 0, 0]])
    for conv in (np.asarray, torch.as_tensor):
        m = confusion_matrix(conv(ref), conv(pred), 3, ignore_index=255, valid=conv(valid))
        np.testing.assert_array_equal(m, expected)


def test_ignore_index_inside_the_class_range_drops_that_reference_class():
    ref = np.array([0, 0, 1, 1])
    pred = np.array([0, 1, 0, 1])
    m = confusion_matrix(ref, pred, 2, ignore_index=0)
    np.testing.assert_array_equal(m, [[0, 0], [1, 1]])   # predictions of 0 still count


def test_small_unsigned_dtypes_and_bool_inputs():
    ref = np.array([0, 1, 255, 3], np.uint8)
    pred = np.array([True, True, False, False])
    m = confusion_matrix(ref, pred, 4, ignore_index=255)
    assert m[0, 1] == 1 and m[1, 1] == 1 and m[3, 0] == 1 and m.sum() == 3
    # uint8 tensors vs a negative ignore_index must not wrap around (255 == -1 in uint8).
    mt = confusion_matrix(torch.tensor([255, 1], dtype=torch.uint8), torch.tensor([1, 1]), 256,
                          ignore_index=-1)
    assert mt[255, 1] == 1 and mt[1, 1] == 1


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(1, 9), shape=st.lists(st.integers(1, 7), min_size=1,
                                                            max_size=3),
       ignore=st.sampled_from([None, 0, 2, 255, -1]), use_valid=st.booleans(),
       dtype=st.sampled_from([np.uint8, np.int16, np.int64]))
def test_numpy_and_torch_paths_agree(data, n, shape, ignore, use_valid, dtype):
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    lo = 0 if dtype == np.uint8 else -2
    ref = rng.integers(lo, n + 3, shape).astype(dtype)
    pred = rng.integers(lo, n + 3, shape).astype(dtype)
    valid = rng.random(shape) < 0.8 if use_valid else None
    m_np = confusion_matrix(ref, pred, n, ignore_index=ignore, valid=valid)
    m_t = confusion_matrix(torch.from_numpy(ref), torch.from_numpy(pred), n, ignore_index=ignore,
                           valid=None if valid is None else torch.from_numpy(valid))
    np.testing.assert_array_equal(m_np, m_t)
    # Reference count by brute force over pixels.
    brute = np.zeros((n, n), np.int64)
    for idx in np.ndindex(*shape):
        r, p = int(ref[idx]), int(pred[idx])
        if (0 <= r < n and 0 <= p < n and r != ignore
                and (valid is None or valid[idx])):
            brute[r, p] += 1
    np.testing.assert_array_equal(m_np, brute)


def test_accumulator_sums_batches_from_both_paths_and_resets(rng):
    ref = rng.integers(0, 5, (6, 20, 20))
    pred = rng.integers(0, 5, (6, 20, 20))
    whole = confusion_matrix(ref, pred, 5, ignore_index=4)
    acc = ConfusionMatrix(5, ignore_index=4)
    for b in range(6):
        if b % 2:
            acc.update(torch.from_numpy(ref[b]), torch.from_numpy(pred[b]))
        else:
            acc.update(ref[b], pred[b])
    np.testing.assert_array_equal(acc.matrix, whole)
    assert acc.scores()["pixels"] == int(whole.sum())
    acc.matrix[0, 0] += 1000            # matrix is a copy
    np.testing.assert_array_equal(acc.matrix, whole)
    acc.reset()
    assert acc.matrix.sum() == 0
    acc.update(ref, pred, valid=np.zeros(ref.shape, bool))
    assert acc.matrix.sum() == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_path_matches_numpy(rng):
    ref = rng.integers(-1, 8, (4, 64, 64))
    pred = rng.integers(0, 8, (4, 64, 64))
    valid = rng.random((4, 64, 64)) < 0.9
    acc = ConfusionMatrix(7, ignore_index=0)
    acc.update(torch.from_numpy(ref).cuda(), torch.from_numpy(pred).cuda(),
               valid=torch.from_numpy(valid).cuda())
    np.testing.assert_array_equal(acc.matrix, confusion_matrix(ref, pred, 7, 0, valid))


def test_bad_inputs_raise_input_errors():
    with pytest.raises(InputError, match="shape"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int), 2)
    with pytest.raises(InputError, match="shape"):
        confusion_matrix(np.zeros(4, int), np.zeros(4, int), 2, valid=np.ones(3, bool))
    with pytest.raises(InputError, match="integer"):
        confusion_matrix(np.zeros(4, np.float32), np.zeros(4, int), 2)
    with pytest.raises(InputError, match="integer"):
        confusion_matrix(torch.zeros(4), torch.zeros(4, dtype=torch.long), 2)
    with pytest.raises(InputError, match="num_classes"):
        confusion_matrix(np.zeros(4, int), np.zeros(4, int), 0)
    with pytest.raises(InputError, match="square"):
        scores(np.zeros((2, 3)))
    with pytest.raises(InputError, match="2×2"):
        change_scores(np.eye(3))


# ------------------------------------------------------------------ scores

def test_perfect_prediction_scores_one(rng):
    ref = rng.integers(0, 4, 500)
    s = scores(confusion_matrix(ref, ref, 4), ["a", "b", "c", "d"])
    assert s["overall_accuracy"] == 1.0 and s["kappa"] == 1.0
    assert s["miou"] == 1.0 and s["mf1"] == 1.0
    assert [c["name"] for c in s["per_class"]] == ["a", "b", "c", "d"]
    assert all(c["precision"] == c["recall"] == 1.0 for c in s["per_class"])
    assert s["pixels"] == 500
    assert_json_clean(s)


def test_two_class_scores_match_the_definitions():
    #              pred 0  pred 1
    m = np.array([[50, 10],     # reference 0
                  [5, 35]])     # reference 1
    s = scores(m)
    n = 100
    # Class 1 seen as positive: TP = 35, FP = 10 (ref 0 predicted 1), FN = 5.
    tp, fp, fn = 35, 10, 5
    c1 = s["per_class"][1]
    assert c1["iou"] == pytest.approx(tp / (tp + fp + fn))
    assert c1["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert c1["precision"] == pytest.approx(tp / (tp + fp))
    assert c1["recall"] == pytest.approx(tp / (tp + fn))
    assert (c1["support"], c1["predicted"]) == (40, 45)
    c0 = s["per_class"][0]
    assert c0["iou"] == pytest.approx(50 / (50 + 5 + 10))
    assert s["miou"] == pytest.approx((c0["iou"] + c1["iou"]) / 2)
    assert s["mf1"] == pytest.approx((c0["f1"] + c1["f1"]) / 2)
    po = (50 + 35) / n
    pe = (60 / n) * (55 / n) + (40 / n) * (45 / n)   # reference × predicted marginals
    assert s["overall_accuracy"] == pytest.approx(po)
    assert s["kappa"] == pytest.approx((po - pe) / (1 - pe))
    assert all(type(c["support"]) is int for c in s["per_class"])


def test_absent_classes_are_none_and_left_out_of_the_means():
    m = np.array([[8, 2, 0, 0],
                  [1, 9, 0, 0],
                  [0, 0, 0, 0],     # class 2: neither in reference nor predicted
                  [3, 0, 0, 0]])    # class 3: in reference only, never predicted → IoU 0
    s = scores(m)
    c2, c3 = s["per_class"][2], s["per_class"][3]
    assert c2["iou"] is None and c2["f1"] is None
    assert c2["precision"] is None and c2["recall"] is None
    assert c3["iou"] == 0.0 and c3["f1"] == 0.0 and c3["recall"] == 0.0
    assert c3["precision"] is None                 # never predicted
    present = [s["per_class"][i]["iou"] for i in (0, 1, 3)]
    assert s["miou"] == pytest.approx(sum(present) / 3)
    assert s["mf1"] == pytest.approx(sum(s["per_class"][i]["f1"] for i in (0, 1, 3)) / 3)
    assert_json_clean(s)


def test_degenerate_matrices_give_none_not_nan():
    empty = scores(np.zeros((3, 3), int))
    assert empty["overall_accuracy"] is None and empty["kappa"] is None
    assert empty["miou"] is None and empty["mf1"] is None and empty["pixels"] == 0
    assert_json_clean(empty)
    one_class = scores(np.array([[7, 0], [0, 0]]))    # chance agreement is 1: kappa undefined
    assert one_class["overall_accuracy"] == 1.0 and one_class["kappa"] is None
    assert one_class["miou"] == 1.0
    assert_json_clean(one_class)
    assert_json_clean(change_scores(np.zeros((2, 2))))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6).flatmap(
    lambda k: st.lists(st.integers(0, 50), min_size=k * k, max_size=k * k)))
def test_score_invariants(cells):
    k = math.isqrt(len(cells))
    m = np.array(cells).reshape(k, k)
    s, t = scores(m), scores(m.T)
    assert_json_clean(s)
    for a, b in zip(s["per_class"], t["per_class"]):
        # Swapping reference and prediction swaps precision and recall only.
        assert (a["precision"], a["recall"], a["iou"]) == (b["recall"], b["precision"], b["iou"])
        for key in ("iou", "f1", "precision", "recall"):
            assert a[key] is None or 0.0 <= a[key] <= 1.0
    if s["miou"] is not None:
        assert 0.0 <= s["miou"] <= s["mf1"] <= 1.0 + 1e-12   # IoU <= F1 per class
    if s["kappa"] is not None:
        assert s["kappa"] <= 1.0 + 1e-12


def test_change_scores_on_a_known_matrix():
    #            no-change  change     (predicted)
    m = np.array([[900, 20],       # reference no-change
                  [30, 50]])       # reference change
    s = change_scores(m)
    tp, fp, fn, tn = 50, 20, 30, 900
    assert (s["tp"], s["fp"], s["fn"], s["tn"]) == (tp, fp, fn, tn)
    assert s["precision"] == pytest.approx(tp / (tp + fp))
    assert s["recall"] == pytest.approx(tp / (tp + fn))
    assert s["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert s["iou"] == pytest.approx(tp / (tp + fp + fn))
    assert s["overall_accuracy"] == pytest.approx(950 / 1000)
    pe = (920 * 930 + 80 * 70) / 1000 ** 2
    assert s["kappa"] == pytest.approx((0.95 - pe) / (1 - pe))
    assert s["kappa"] == pytest.approx(scores(m)["kappa"])
    assert_json_clean(s)


# ------------------------------------------------------------------ Olofsson et al. (2014)

# Olofsson et al. (2014), Remote Sensing of Environment 148, 42-57, section 5, Table 8:
# sample counts with rows = MAP class (strata), columns = REFERENCE class, in the order
# deforestation, forest gain, stable forest, stable non-forest.  (Its reference columns are
# [66,0,1,2], [0,55,0,1], [5,8,153,9], [4,12,11,313].)
OLOFSSON_MAP_BY_REF = np.array([[66, 0, 5, 4],
                                [0, 55, 8, 12],
                                [1, 0, 153, 11],
                                [2, 1, 9, 313]])
OLOFSSON_PIXELS = np.array([200000, 150000, 3200000, 6450000])   # mapped 30 m pixels
HA_PER_PIXEL = 0.09
OLOFSSON_NAMES = ["deforestation", "forest gain", "stable forest", "stable non-forest"]


@pytest.fixture
def olofsson():
    # This module's matrices are rows = reference, so the paper's table goes in transposed.
    return area_based_accuracy(OLOFSSON_MAP_BY_REF.T, OLOFSSON_PIXELS, HA_PER_PIXEL,
                               OLOFSSON_NAMES)


def test_olofsson_2014_areas_and_accuracies(olofsson):
    # Published in section 5 (error-adjusted area ± 95 % CI in ha; accuracies to 2 decimals).
    area = [21158, 11686, 285770, 581386]
    area_ci = [6158, 3756, 15510, 16282]
    users = [0.88, 0.73, 0.93, 0.96]
    producers = [0.75, 0.85, 0.93, 0.96]
    users_ci = [0.07, 0.10, 0.04, 0.02]
    for c, a, aci, u, uci, p in zip(olofsson["per_class"], area, area_ci, users, users_ci,
                                    producers):
        assert c["estimated_area"] == pytest.approx(a, rel=0.005)
        assert c["ci95_area"] == pytest.approx(aci, rel=0.005)
        assert c["users_accuracy"] == pytest.approx(u, abs=0.01)
        assert c["users_ci95"] == pytest.approx(uci, abs=0.01)
        assert c["producers_accuracy"] == pytest.approx(p, abs=0.01)
    assert olofsson["overall_accuracy"] == pytest.approx(0.95, abs=0.01)
    assert olofsson["overall_ci95"] == pytest.approx(0.02, abs=0.01)
    mapped = [c["mapped_area"] for c in olofsson["per_class"]]
    assert mapped == pytest.approx(list(OLOFSSON_PIXELS * HA_PER_PIXEL))
    assert olofsson["total_area"] == pytest.approx(900000)
    # The estimator redistributes the map's area; it never creates or loses any.
    assert sum(c["estimated_area"] for c in olofsson["per_class"]) == pytest.approx(900000)
    assert [c["name"] for c in olofsson["per_class"]] == OLOFSSON_NAMES
    assert_json_clean(olofsson)


def test_olofsson_producers_ci_follows_eq7(olofsson):
    # The paper prints producer's CIs 0.21, 0.23, 0.03, 0.01.  Deforestation and stable
    # forest agree with eq. 7; forest gain and stable non-forest come out 0.254 and 0.018
    # from eq. 7 itself (a known misprint), so all four are recomputed here term by term.
    n = OLOFSSON_MAP_BY_REF.astype(float)
    W = OLOFSSON_PIXELS / OLOFSSON_PIXELS.sum()
    N = OLOFSSON_PIXELS.astype(float)          # N_i. in pixels, as the paper writes eq. 7
    n_i = n.sum(axis=1)
    for j, c in enumerate(olofsson["per_class"]):
        N_ref = sum(N[i] / n_i[i] * n[i, j] for i in range(4))          # N̂_.j
        P = (W[j] * n[j, j] / n_i[j]) / sum(W[i] * n[i, j] / n_i[i] for i in range(4))
        U = n[j, j] / n_i[j]
        var = (N[j] ** 2 * (1 - P) ** 2 * U * (1 - U) / (n_i[j] - 1)
               + P ** 2 * sum(N[i] ** 2 * n[i, j] / n_i[i] * (1 - n[i, j] / n_i[i]) / (n_i[i] - 1)
                              for i in range(4) if i != j)) / N_ref ** 2
        assert c["producers_ci95"] == pytest.approx(1.96 * math.sqrt(var), rel=1e-9)
    printed_and_consistent = {0: 0.21, 2: 0.03}
    for j, ci in printed_and_consistent.items():
        assert olofsson["per_class"][j]["producers_ci95"] == pytest.approx(ci, abs=0.01)


def test_full_census_reproduces_the_reference_counts(rng):
    # With mapped_area None the sample is the whole map: W_i = n_i./n, so the estimated area of
    # reference class j is its reference count and U/P are plain precision/recall.  This pins
    # down the transposition (rows = reference here, rows = map in the paper).
    m = rng.integers(0, 40, (4, 4)) + np.diag([60, 70, 80, 90])
    r = area_based_accuracy(m)
    s = scores(m)
    for j, (a, c) in enumerate(zip(r["per_class"], s["per_class"])):
        assert a["estimated_area"] == pytest.approx(m[j].sum())      # reference row total
        assert a["mapped_area"] == pytest.approx(m[:, j].sum())      # map column total
        assert a["users_accuracy"] == pytest.approx(c["precision"])
        assert a["producers_accuracy"] == pytest.approx(c["recall"])
    assert r["overall_accuracy"] == pytest.approx(s["overall_accuracy"])
    assert r["total_area"] == pytest.approx(m.sum())


def test_area_estimator_guards():
    m = OLOFSSON_MAP_BY_REF.T.copy()
    # A stratum with a single sample: its variance term needs n_i. - 1 > 0.
    m[:, 1] = [0, 1, 0, 0]
    r = area_based_accuracy(m, OLOFSSON_PIXELS)
    assert r["per_class"][1]["users_accuracy"] == 1.0
    assert r["per_class"][1]["users_ci95"] is None
    assert all(c["ci95_area"] is None and c["producers_ci95"] is None for c in r["per_class"])
    assert r["overall_ci95"] is None
    assert r["per_class"][0]["users_ci95"] is not None      # other strata are fine
    assert_json_clean(r)
    # A mapped class with no samples at all cannot be estimated.
    m[:, 1] = 0
    with pytest.raises(InputError, match="no reference samples"):
        area_based_accuracy(m, OLOFSSON_PIXELS)
    # ...but an unmapped, unsampled class is harmless.
    r = area_based_accuracy(m, OLOFSSON_PIXELS * np.array([1, 0, 1, 1]))
    assert r["per_class"][1]["users_accuracy"] is None
    assert r["per_class"][1]["mapped_area"] == 0.0
    assert r["overall_ci95"] is not None
    assert_json_clean(r)
    with pytest.raises(InputError, match="mapped_area"):
        area_based_accuracy(m, [1, 2, 3])
    with pytest.raises(InputError, match="pixel_area"):
        area_based_accuracy(m, OLOFSSON_PIXELS, pixel_area=0)
