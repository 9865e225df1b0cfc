"""Accuracy metrics shared by training, evaluation and benchmarks.

Everything starts from a confusion matrix of pixel counts with **rows = reference class** and
**columns = predicted (map) class**.  Counting is plain numpy; torch tensors are counted on their
own device with ``torch.bincount`` (training accumulates on the GPU, so a batch never has to be
copied to the host), and both paths give identical counts.  ``torch`` is never imported here: a
tensor can only reach this module if the caller has imported torch already.

Undefined values (a ratio with a zero denominator) are reported as ``None``, never NaN, so every
result is plain Python numbers and ``json.dumps`` works on it.
"""
from __future__ import annotations

import math
import sys
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..jobs import InputError

__all__ = ["confusion_matrix", "ConfusionMatrix", "scores", "change_scores", "area_based_accuracy"]

#: Two-sided 95 % normal quantile, as used by Olofsson et al. (2014).
Z95 = 1.96


# --------------------------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------------------------

def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _check_num_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 1:
        raise InputError(f"num_classes must be a positive integer (got {num_classes!r})")
    return int(num_classes)


def _shape_error(what: str, a: Sequence[int], b: Sequence[int]) -> InputError:
    return InputError(f"{what} has shape {tuple(a)} but the reference has shape {tuple(b)}; "
                      f"pass arrays covering the same pixels")


def _np_index_array(a: Any, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == np.bool_:
        return a.view(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        raise InputError(f"{name} must hold integer class indexes (got dtype {a.dtype}); cast "
                         f"it with .astype(int) after masking nodata")
    return a


def _np_in_range(a: np.ndarray, n: int) -> np.ndarray:
    if np.issubdtype(a.dtype, np.unsignedinteger):
        return a < n
    return (a >= 0) & (a < n)


def _numpy_counts(reference: Any, prediction: Any, n: int, ignore_index: Optional[int],
                  valid: Any) -> np.ndarray:
    ref = _np_index_array(reference, "reference")
    pred = _np_index_array(prediction, "prediction")
    shape = ref.shape
    if pred.shape != shape:
        raise _shape_error("the prediction", pred.shape, shape)
    ref = ref.reshape(-1)
    pred = pred.reshape(-1)
    keep = _np_in_range(ref, n) & _np_in_range(pred, n)
    # An ignore_index outside 0..n-1 is already excluded by the range test.
    if ignore_index is not None and 0 <= ignore_index < n:
        keep &= ref != ignore_index
    if valid is not None:
        v = np.asarray(valid)
        if v.shape != shape:
            raise _shape_error("the valid mask", v.shape, shape)
        keep &= v.reshape(-1).astype(bool, copy=False)
    idx = ref[keep].astype(np.intp) * n
    idx += pred[keep]
    return np.bincount(idx, minlength=n * n).reshape(n, n).astype(np.int64, copy=False)


def _torch_counts(reference: Any, prediction: Any, n: int, ignore_index: Optional[int],
                  valid: Any):
    """Flat int64 tensor of n*n counts on the device of the tensor input(s)."""
    torch = sys.modules["torch"]
    device = reference.device if _is_tensor(reference) else prediction.device
    ref = torch.as_tensor(reference, device=device)
    pred = torch.as_tensor(prediction, device=device)
    for t, name in ((ref, "reference"), (pred, "prediction")):
        if t.is_floating_point() or t.is_complex():
            raise InputError(f"{name} must hold integer class indexes (got {t.dtype}); cast it "
                             f"with .long() after masking nodata")
    shape = ref.shape
    if pred.shape != shape:
        raise _shape_error("the prediction", pred.shape, shape)
    # int64 first: comparisons of small integer dtypes with Python ints can wrap in torch.
    ref = ref.reshape(-1).long()
    pred = pred.reshape(-1).long()
    keep = (ref >= 0) & (ref < n) & (pred >= 0) & (pred < n)
    if ignore_index is not None and 0 <= ignore_index < n:
        keep &= ref != ignore_index
    if valid is not None:
        v = torch.as_tensor(valid, device=device)
        if v.shape != shape:
            raise _shape_error("the valid mask", v.shape, shape)
        keep &= v.reshape(-1).bool()
    # Dropped pixels go to an extra bin n*n instead of being compacted out with a boolean
    # index, which would need a device→host sync to learn the output size.
    idx = torch.where(keep, ref * n + pred, torch.full_like(ref, n * n))
    return torch.bincount(idx, minlength=n * n + 1)[: n * n]


def confusion_matrix(reference: Any, prediction: Any, num_classes: int,
                     ignore_index: Optional[int] = None, valid: Any = None) -> np.ndarray:
    """Pixel-count confusion matrix, int64 ``num_classes``×``num_classes``.

    Rows are the reference class, columns the predicted class.  ``reference`` and
    ``prediction`` are integer class indexes of any (equal) shape, numpy or torch.  A pixel is
    not counted where the reference equals ``ignore_index``, where ``valid`` is False, or where
    either value lies outside ``0..num_classes-1``.
    """
    n = _check_num_classes(num_classes)
    if _is_tensor(reference) or _is_tensor(prediction) or _is_tensor(valid):
        if not (_is_tensor(reference) or _is_tensor(prediction)):
            reference = sys.modules["torch"].as_tensor(np.asarray(reference),
                                                       device=valid.device)
        counts = _torch_counts(reference, prediction, n, ignore_index, valid)
        return counts.cpu().numpy().reshape(n, n).astype(np.int64, copy=False)
    return _numpy_counts(reference, prediction, n, ignore_index, valid)


class ConfusionMatrix:
    """Accumulates a confusion matrix over many batches.

    Torch batches are counted and summed on their own device, so per-batch updates during
    training copy only at :attr:`matrix` time; numpy batches are summed on the host.
    """

    def __init__(self, num_classes: int, ignore_index: Optional[int] = None) -> None:
        self.num_classes = _check_num_classes(num_classes)
        self.ignore_index = ignore_index
        self._host = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self._device = None  # flat int64 torch tensor, created by the first torch update

    def update(self, reference: Any, prediction: Any, valid: Any = None) -> None:
        """Add one batch (same rules as :func:`confusion_matrix`)."""
        n = self.num_classes
        if _is_tensor(reference) or _is_tensor(prediction):
            counts = _torch_counts(reference, prediction, n, self.ignore_index, valid)
            if self._device is None:
                self._device = counts
            else:
                self._device += counts.to(self._device.device)
        else:
            self._host += confusion_matrix(reference, prediction, n, self.ignore_index, valid)

    def reset(self) -> None:
        """Forget everything counted so far."""
        self._host[...] = 0
        self._device = None

    @property
    def matrix(self) -> np.ndarray:
        """The accumulated int64 matrix (rows = reference, columns = prediction); a copy."""
        m = self._host.copy()
        if self._device is not None:
            m += self._device.cpu().numpy().reshape(self.num_classes, self.num_classes)
        return m

    def scores(self, class_names: Optional[List[str]] = None) -> Dict[str, Any]:
        """:func:`scores` of the accumulated matrix."""
        return scores(self.matrix, class_names)


# --------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------

def _square(matrix: Any, what: str = "matrix") -> np.ndarray:
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise InputError(f"{what} must be a non-empty square matrix (got shape {m.shape})")
    if not (np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)):
        raise InputError(f"{what} must hold counts (got dtype {m.dtype})")
    if not np.isfinite(m).all() or (m < 0).any():
        raise InputError(f"{what} must hold finite, non-negative counts")
    return m.astype(np.float64)


def _ratio(num: float, den: float) -> Optional[float]:
    return float(num / den) if den > 0 else None


def _number(x: Any) -> Any:
    """A plain Python int for whole counts, float otherwise (JSON-friendly)."""
    x = float(x)
    return int(x) if x.is_integer() else x


def _names(class_names: Optional[Sequence[str]], k: int) -> List[Optional[str]]:
    if class_names is None:
        return [None] * k
    if len(class_names) != k:
        raise InputError(f"{len(class_names)} class names given for a {k}-class matrix")
    return [str(c) for c in class_names]


def _kappa(m: np.ndarray) -> Optional[float]:
    """Cohen's kappa (1960): (p_o - p_e) / (1 - p_e), p_e from the row and column marginals.

    Undefined (None) when p_e == 1, i.e. reference and prediction are both one single class.
    """
    total = m.sum()
    if total <= 0:
        return None
    po = np.trace(m) / total
    pe = float(m.sum(axis=1) @ m.sum(axis=0)) / total ** 2
    if pe >= 1.0:
        return None
    return float((po - pe) / (1.0 - pe))


def scores(matrix: np.ndarray, class_names: Optional[List[str]] = None) -> Dict[str, Any]:
    """Overall and per-class scores of a confusion matrix (rows = reference).

    Returns ``overall_accuracy``, ``kappa`` (Cohen), ``miou``, ``mf1``, ``pixels`` and
    ``per_class``: a list of ``{index, name, iou, f1, precision (user's accuracy), recall
    (producer's accuracy), support (reference pixels), predicted (predicted pixels)}``.

    A ratio whose denominator is zero is ``None``.  In particular a class absent from both the
    reference and the prediction has ``iou``/``f1`` None and is **excluded** from ``miou`` and
    ``mf1`` (it cannot be right or wrong, so averaging a 0 or 1 for it would only reward or
    punish the choice of class list).  A class present in the reference but never predicted (or
    the reverse) scores 0 and is included.  ``kappa`` is None when it is undefined (both
    reference and prediction are one single class); an empty matrix gives None everywhere.
    """
    m = _square(matrix)
    k = m.shape[0]
    names = _names(class_names, k)
    total = m.sum()
    tp = np.diag(m)
    support = m.sum(axis=1)
    predicted = m.sum(axis=0)
    per_class = []
    for i in range(k):
        union = support[i] + predicted[i] - tp[i]          # TP + FP + FN
        per_class.append({
            "index": i,
            "name": names[i],
            "iou": _ratio(tp[i], union),
            "f1": _ratio(2.0 * tp[i], support[i] + predicted[i]),   # 2TP / (2TP + FP + FN)
            "precision": _ratio(tp[i], predicted[i]),
            "recall": _ratio(tp[i], support[i]),
            "support": _number(support[i]),
            "predicted": _number(predicted[i]),
        })
    ious = [c["iou"] for c in per_class if c["iou"] is not None]
    f1s = [c["f1"] for c in per_class if c["f1"] is not None]
    return {
        "overall_accuracy": _ratio(tp.sum(), total),
        "kappa": _kappa(m),
        "miou": float(np.mean(ious)) if ious else None,
        "mf1": float(np.mean(f1s)) if f1s else None,
        "per_class": per_class,
        "pixels": _number(total),
    }


def change_scores(matrix_2x2: np.ndarray) -> Dict[str, Any]:
    """Scores of binary change detection from a 2×2 matrix (rows = reference, index 1 = change).

    ``precision``, ``recall``, ``f1`` and ``iou`` are those of the change class (the no-change
    majority would otherwise dominate); ``overall_accuracy`` and ``kappa`` are over both classes.
    The raw ``tp``/``fp``/``fn``/``tn`` counts are included.  Undefined ratios are None.
    """
    m = _square(matrix_2x2, "the change matrix")
    if m.shape != (2, 2):
        raise InputError(f"the change matrix must be 2×2 (got {m.shape})")
    tn, fp, fn, tp = m[0, 0], m[0, 1], m[1, 0], m[1, 1]
    total = m.sum()
    return {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "iou": _ratio(tp, tp + fp + fn),
        "overall_accuracy": _ratio(tp + tn, total),
        "kappa": _kappa(m),
        "tp": _number(tp), "fp": _number(fp), "fn": _number(fn), "tn": _number(tn),
        "pixels": _number(total),
    }


# --------------------------------------------------------------------------------------------
# Area-based accuracy (Olofsson et al. 2014)
# --------------------------------------------------------------------------------------------

def area_based_accuracy(matrix: np.ndarray, mapped_area: Optional[np.ndarray] = None,
                        pixel_area: float = 1.0,
                        class_names: Optional[List[str]] = None) -> Dict[str, Any]:
    """Area estimates and accuracies with 95 % confidence intervals, after Olofsson et al.

    P. Olofsson, G. M. Foody, M. Herold, S. V. Stehman, C. E. Woodcock, M. A. Wulder (2014),
    "Good practices for estimating area and assessing accuracy of land change", Remote Sensing
    of Environment 148, 42-57.  A pixel count from a map is biased by the map's errors; the
    stratified estimator (map classes as strata, the reference sample as ``matrix``) corrects
    the area of every class and gives its uncertainty.

    ``matrix`` holds sample counts with **rows = reference, columns = map class** (this
    module's convention; the paper's matrices are transposed).  ``mapped_area`` is the pixel
    count of each map class over the whole map; None means the matrix covers the whole map
    (its column sums).  Areas are reported in pixels × ``pixel_area``.

    Returns ``per_class`` (``index, name, mapped_area, estimated_area, ci95_area,
    users_accuracy, users_ci95, producers_accuracy, producers_ci95``), ``overall_accuracy``,
    ``overall_ci95`` and ``total_area``; a ``*_ci95`` value is the half-width of the interval.
    Standard errors need at least two samples in a stratum (n_i. - 1 in the denominator): an
    interval that depends on a stratum (of non-zero mapped area) with n_i. <= 1 is None, as is
    any ratio with a zero denominator.
    """
    ref_by_map = _square(matrix)
    # n[i, j]: samples with MAP class i and REFERENCE class j — the paper's orientation.
    n = ref_by_map.T
    k = n.shape[0]
    names = _names(class_names, k)
    n_i = n.sum(axis=1)                                  # samples per stratum (map class)
    if mapped_area is None:
        mapped = n_i.copy()
    else:
        mapped = np.asarray(mapped_area, dtype=np.float64).reshape(-1)
        if mapped.shape != (k,):
            raise InputError(f"mapped_area has {mapped.size} values for a {k}-class matrix")
        if not np.isfinite(mapped).all() or (mapped < 0).any():
            raise InputError("mapped_area must hold finite, non-negative pixel counts")
    if not (math.isfinite(pixel_area) and pixel_area > 0):
        raise InputError(f"pixel_area must be a positive number (got {pixel_area!r})")
    total_mapped = mapped.sum()
    if total_mapped <= 0:
        raise InputError("the map has no area (mapped_area sums to 0)")
    unsampled = (mapped > 0) & (n_i == 0)
    if unsampled.any():
        missing = [names[i] or str(i) for i in np.flatnonzero(unsampled)]
        raise InputError(f"map classes {missing} have mapped area but no reference samples; "
                         f"the stratified estimator needs samples in every mapped class")

    W = mapped / total_mapped                            # stratum weights W_i (eq. 9 context)
    in_map = W > 0
    r = np.divide(n, n_i[:, None], out=np.zeros_like(n), where=n_i[:, None] > 0)  # n_ij / n_i.
    p = W[:, None] * r                                   # p_ij = W_i n_ij / n_i.  (eq. 4)
    p_ref = p.sum(axis=0)                                # p_.j, reference-class proportions
    # Variances need n_i. - 1 > 0 in every stratum that carries weight.
    var_ok = bool(np.all(n_i[in_map] > 1))
    dof = np.where(n_i > 1, n_i - 1, np.inf)             # 1/inf = 0: only for W_i = 0 strata
    stratum_var = r * (1 - r) / dof[:, None]             # (n_ij/n_i.)(1 - n_ij/n_i.)/(n_i. - 1)

    area_scale = total_mapped * pixel_area
    U = np.divide(np.diag(n), n_i, out=np.full(k, np.nan), where=n_i > 0)  # U_i = p_ii / p_i.

    per_class = []
    for j in range(k):
        # SE of p_.j (eq. 10): sum over strata of W_i^2 (n_ij/n_i.)(1-n_ij/n_i.)/(n_i.-1).
        se_p = math.sqrt(float(np.sum(W ** 2 * stratum_var[:, j])))
        users = None if n_i[j] == 0 else float(U[j])
        users_ci = (Z95 * math.sqrt(users * (1 - users) / (n_i[j] - 1))
                    if users is not None and n_i[j] > 1 else None)
        producers = _ratio(p[j, j], p_ref[j])            # P_j = p_jj / p_.j
        producers_ci = None
        if producers is not None and var_ok:
            # Eq. 7, with proportions in place of pixel counts (the total area cancels):
            # V(P_j) = [W_j^2 (1-P_j)^2 U_j(1-U_j)/(n_j.-1)
            #           + P_j^2 sum_{i!=j} W_i^2 (n_ij/n_i.)(1-n_ij/n_i.)/(n_i.-1)] / p_.j^2
            own = 0.0 if W[j] == 0 else \
                W[j] ** 2 * (1 - producers) ** 2 * U[j] * (1 - U[j]) / (n_i[j] - 1)
            others = float(np.sum(np.delete(W ** 2 * stratum_var[:, j], j)))
            producers_ci = Z95 * math.sqrt((own + producers ** 2 * others) / p_ref[j] ** 2)
        per_class.append({
            "index": j,
            "name": names[j],
            "mapped_area": float(mapped[j] * pixel_area),
            "estimated_area": float(p_ref[j] * area_scale),
            "ci95_area": Z95 * se_p * area_scale if var_ok else None,
            "users_accuracy": users,
            "users_ci95": users_ci,
            "producers_accuracy": producers,
            "producers_ci95": producers_ci,
        })

    U0 = np.nan_to_num(U)                                # U_i of W_i = 0 strata never matter
    overall = float(np.sum(W * U0))                      # O = sum_i p_ii  (eq. 1 with p_ij)
    # Eq. 5: V(O) = sum_i W_i^2 U_i (1 - U_i) / (n_i. - 1).
    overall_ci = (Z95 * math.sqrt(float(np.sum(W ** 2 * U0 * (1 - U0) / dof))) if var_ok
                  else None)
    return {
        "per_class": per_class,
        "overall_accuracy": overall,
        "overall_ci95": overall_ci,
        "total_area": float(area_scale),
        "pixel_area": float(pixel_area),
    }
