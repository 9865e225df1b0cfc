"""The labels of one refinement round, on a window of the image grid.

Corrections are burnt with their class; a seeded share of each class's corrections the parent
never trained on (whole polygons, never a class's last training pixels) is held out for the
round's score, so the score of the parent is as honest as the new model's (its lineage names
the corrections it trained on by :func:`correction_key`).  Reviewed places with no correction
in them are confirmed: every pixel takes the parent model's class.  Elsewhere a sample of the
parent's confident pixels becomes pseudo-labels, so the model keeps what it already did right;
everything else is ignored (255).  Pseudo-labels are only as good as the parent, so both their
confidence and their number follow what the analyst's review showed of it:

- *confident* means a margin (p1 − p2) at or above the lowest of ``MARGINS`` at which the
  parent was at least ``PSEUDO_PRECISION`` right on the reviewed pixels (trained corrections
  and confirmed places) it was that sure of; with no such margin there are no pseudo-labels.
  Corrections the parent already trained on are left out of that evidence when there are new
  ones: it learned them, so they say nothing of how right it is elsewhere.  A fixed margin of
  0.5 let through pseudo-labels 70–85 % right, and trained on them each round's model grew
  surer of its own mistakes (docs/benchmarks.md);
- their number (``pseudo_ratio`` per corrected pixel) is scaled by the share of the reviewed
  pixels the parent had right (``parent_agreement``), so a parent wrong on most of them does
  not teach its mistakes back three to one.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import AbstractSet, Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from affine import Affine
from rasterio.features import rasterize
from rasterio.windows import Window, from_bounds
from shapely.geometry import shape
from shapely.ops import transform as transform_coords

from ..inference.uncertainty import SCALE
from ..io.classes import class_colour
from ..io.corrections import Feature
from ..jobs import InputError

IGNORE = 255
MARGINS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)  # p1 − p2 thresholds tried for pseudo-labels
PSEUDO_PRECISION = 0.95  # the parent's accuracy on reviewed pixels at a margin it must reach
MIN_EVIDENCE_PIXELS = 64  # reviewed pixels at or above a margin needed to judge it
HELD_OUT_SHARE = 0.25
MIN_HELD_OUT_PIXELS = 64
NO_SCORE = "the score on held-out corrections is not available this round; training still runs"
KEY_GRID_PX = 1 / 8  # a correction's key rounds its outline to this much of a pixel
PSEUDO_RATIO = 3.0  # pseudo-labelled pixels per trained corrected pixel


@dataclass
class RoundLabels:
    """Training and held-out labels (class values, 255 elsewhere) on ``window``, with counts."""

    window: Window
    train: np.ndarray
    held_out: np.ndarray
    counts: Dict[str, float] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    trained_keys: List[str] = field(default_factory=list)  # corrections trained on, by key


def correction_key(feature: Feature, transform: Affine) -> str:
    """A correction's identity across rounds and files: its class and geometry, hashed.

    The geometry is taken to the raster's pixels (``transform``), rounded to
    ``KEY_GRID_PX`` and normalised (ring start and orientation), so the same polygon saved
    again by another tool, with other float rounding, keeps its key."""
    to_pixels = ~transform

    def on_grid(x, y):
        col, row = to_pixels * (np.asarray(x), np.asarray(y))
        return np.round(col / KEY_GRID_PX), np.round(row / KEY_GRID_PX)

    quantised = transform_coords(on_grid, shape(feature.geometry)).normalize()
    return hashlib.sha1(quantised.wkb + repr(feature.value).encode()).hexdigest()[:16]


def class_values(features: Sequence[Feature], classes: List[Dict[str, Any]],
                 new_head: bool) -> Tuple[List[int], List[Dict[str, Any]]]:
    """Each correction's class value, and the classes to learn.

    A class field holds the model's class values (integers) or names.  An unknown class is an
    error offering ``--init-head new``; with it the new classes are appended.
    """
    by_name = {str(c["name"]).lower(): int(c["value"]) for c in classes}
    known = {int(c["value"]) for c in classes}
    values, unknown = [], []
    for f in features:
        v = f.value
        if isinstance(v, str) and v.strip().lower() in by_name:
            v = by_name[v.strip().lower()]
        elif isinstance(v, str) and v.strip().isdigit():
            v = int(v.strip())
        elif isinstance(v, float) and v.is_integer():
            v = int(v)
        if not isinstance(v, int) or not 0 <= v < IGNORE:
            raise InputError(f"correction {f.fid} has class {f.value!r}, which is neither a "
                             f"class value (0..254) nor a class name of the model "
                             f"({', '.join(c['name'] for c in classes)})")
        if v not in known and v not in unknown:
            unknown.append(v)
        values.append(v)
    if unknown and not new_head:
        raise InputError(f"the corrections use class value(s) {', '.join(map(str, unknown))} "
                         f"that the model does not have (its classes: {class_table(classes)}); "
                         f"to learn new classes add --init-head new / INIT_HEAD new (the "
                         f"classifier is trained anew, the rest of the model is kept)")
    extended = [dict(c) for c in classes] + [
        {"value": v, "name": f"class {v}", "color": class_colour(len(classes) + i)}
        for i, v in enumerate(sorted(unknown))]
    return values, sorted(extended, key=lambda c: c["value"])


def inside(features: Sequence[Feature], raster_bounds: Tuple[float, float, float, float]
           ) -> Tuple[List[int], List[int]]:
    """Indexes of the features meeting the raster, and fids of those entirely outside it."""
    left, bottom, right, top = raster_bounds
    keep, outside = [], []
    for i, f in enumerate(features):
        x0, y0, x1, y1 = shape(f.geometry).bounds
        if x1 <= left or x0 >= right or y1 <= bottom or y0 >= top:
            outside.append(f.fid)
        else:
            keep.append(i)
    return keep, outside


def training_window(features: Sequence[Feature], transform: Affine, width: int, height: int,
                    tile: int, margin: int) -> Window:
    """The window around every feature (plus ``margin`` px), at least ``tile`` a side, inside
    the raster."""
    boxes = [shape(f.geometry).bounds for f in features]
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    win = from_bounds(x0, y0, x1, y1, transform=transform)
    c0, r0 = int(np.floor(win.col_off)) - margin, int(np.floor(win.row_off)) - margin
    c1 = int(np.ceil(win.col_off + win.width)) + margin
    r1 = int(np.ceil(win.row_off + win.height)) + margin
    c0, c1 = _at_least(c0, c1, tile, width)
    r0, r1 = _at_least(r0, r1, tile, height)
    return Window(c0, r0, c1 - c0, r1 - r0)


def _at_least(lo: int, hi: int, size: int, limit: int) -> Tuple[int, int]:
    lo, hi = max(lo, 0), min(hi, limit)
    missing = size - (hi - lo)
    if missing > 0:
        lo = max(0, lo - missing // 2 - missing % 2)
        hi = min(limit, lo + max(size, hi - lo))
        lo = max(0, hi - size)
    return lo, hi


def hold_out(pixels: np.ndarray, values: Sequence[int], eligible: np.ndarray, share: float,
             seed: int) -> Tuple[List[int], Optional[str]]:
    """Indexes of corrections to hold out (whole polygons, seeded): about ``share`` of each
    class's ``eligible`` corrected pixels, never the last training pixels of a class; none,
    with the reason, when there are too few.  ``pixels``: each correction's pixels;
    ``values``: its class."""
    present = [i for i in range(len(pixels)) if eligible[i] and pixels[i] > 0]
    total = int(pixels[present].sum())
    if share <= 0:
        return [], "no corrections are held out (held-out share 0): no score this round"
    if len(present) < 2 or total * share < MIN_HELD_OUT_PIXELS:
        return [], (f"too few corrected pixels new to the model ({total} in {len(present)} "
                    f"correction(s)) to hold any out: {NO_SCORE}")
    # per class, so a class's only corrections are never all held out (on the bench the one
    # forest correction of a round was, and the model could not learn forest that round)
    classes = max(values) + 1
    training = np.bincount(values, weights=pixels, minlength=classes)
    allowed = share * np.bincount([values[i] for i in present], pixels[present], classes)
    held_of = np.zeros(classes)
    held: List[int] = []
    # whole polygons in a seeded order, each taken while it keeps its class's share at most
    # ``share`` (the first always), so a few large corrections do not hold out most pixels
    for i in np.random.default_rng(seed).permutation(present):
        if len(held) == len(present) - 1:
            break
        c, n = values[i], pixels[i]
        if training[c] - n > 0 and (not held or held_of[c] + n <= allowed[c]):
            held.append(int(i))
            held_of[c] += n
            training[c] -= n
    if not held:
        return [], ("each class corrected anew has a single correction, and the model needs "
                    f"it to learn the class: {NO_SCORE}")
    return held, None


def round_labels(corrections: Sequence[Feature], values: Sequence[int],
                 reviewed: Sequence[Feature], window: Window, transform: Affine,
                 prediction: np.ndarray, uncertainty: np.ndarray, pred_nodata: Optional[int],
                 held_out_share: float = HELD_OUT_SHARE, pseudo_ratio: float = PSEUDO_RATIO,
                 seed: int = 0, pseudo_scaled: bool = True,
                 learned: AbstractSet[str] = frozenset()) -> RoundLabels:
    """Training and held-out labels on ``window`` (``prediction``/``uncertainty``: the parent's
    class and uint8 uncertainty rasters read on that window).  ``learned``: the keys of the
    corrections the parent trained on.  ``pseudo_scaled=False`` keeps ``pseudo_ratio`` at the
    lowest margin whatever the parent gets right (the recipe before the scaling)."""
    from rasterio.windows import transform as window_transform
    shape_ = (int(window.height), int(window.width))
    at = window_transform(window, transform)
    ids = (rasterize(((f.geometry, i + 1) for i, f in enumerate(corrections)), out_shape=shape_,
                     transform=at, fill=0, dtype="int32")
           if corrections else np.zeros(shape_, np.int32))
    pixels = np.bincount(ids.ravel(), minlength=len(corrections) + 1)[1:]
    empty = [str(corrections[i].fid) for i in np.nonzero(pixels == 0)[0]]
    notes = [f"correction(s) {', '.join(empty)} cover no pixel centre and are skipped"] \
        if empty else []
    keys = [correction_key(f, transform) for f in corrections]
    new = np.array([k not in learned for k in keys], bool)
    # only corrections the parent never trained on are held out: the parent's score is honest
    held, why = hold_out(pixels, values, new, held_out_share, seed)
    if why:
        notes.append(why)
    lut = np.full(len(corrections) + 1, IGNORE, np.uint8)
    lut[1:] = values
    classes = lut[ids]
    held_mask = np.isin(ids, np.asarray(held, np.int32) + 1)
    corrected = ids > 0
    train = np.where(corrected & ~held_mask, classes, IGNORE).astype(np.uint8)
    held_out = np.where(held_mask, classes, IGNORE).astype(np.uint8)

    valid = prediction != (pred_nodata if pred_nodata is not None else IGNORE)
    seen = (rasterize((f.geometry for f in reviewed), out_shape=shape_, transform=at, fill=0,
                      dtype="uint8").astype(bool) if reviewed else np.zeros(shape_, bool))
    confirmed = seen & ~corrected & valid
    train[confirmed] = prediction[confirmed]
    n_train = int((train != IGNORE).sum() - confirmed.sum())
    # what the review showed of the parent: the trained corrections it had not learned yet
    # (all of them when none is new) and the confirmed places
    trained = corrected & ~held_mask & valid
    unseen = trained & np.isin(ids, np.flatnonzero(new) + 1)
    evidence = (unseen if unseen.any() else trained) | confirmed
    right = prediction[evidence] == train[evidence]
    agreement = float(right.mean()) if evidence.any() else 1.0
    margin = (pseudo_margin(right, uncertainty[evidence]) if pseudo_scaled and evidence.any()
              else MARGINS[0])
    if margin is None:
        notes.append(f"no pseudo-labels this round: at no confidence was the parent at least "
                     f"{PSEUDO_PRECISION:.0%} right on the reviewed pixels")
    n_pseudo = _add_pseudo_labels(train, prediction, uncertainty, ~seen & ~corrected & valid,
                                  margin, int(pseudo_ratio * (agreement if pseudo_scaled else 1)
                                              * max(n_train, 1)), seed + 1)
    counts = {"corrections": len(corrections), "corrections_trained": len(corrections) - len(held),
              "held_out": len(held), "corrected_pixels": n_train,
              "held_out_pixels": int(held_mask.sum()), "confirmed_pixels": int(confirmed.sum()),
              "pseudo_pixels": int(n_pseudo), "pseudo_margin": margin,
              "unseen_corrected_pixels": int(unseen.sum()),
              "parent_agreement": round(agreement, 4)}
    held_set = set(held)
    trained_keys = [k for i, k in enumerate(keys) if i not in held_set and pixels[i] > 0]
    return RoundLabels(window, train, held_out, counts, notes, trained_keys)


def _add_pseudo_labels(train: np.ndarray, prediction: np.ndarray, uncertainty: np.ndarray,
                       eligible: np.ndarray, margin: Optional[float], wanted: int,
                       seed: int) -> int:
    """Label up to ``wanted`` random ``eligible`` pixels of ``train`` with the parent's class
    where its margin is at least ``margin`` (none when None); returns how many."""
    if margin is None:
        return 0
    candidates = np.flatnonzero(eligible & _sure(uncertainty, margin))
    chosen = np.random.default_rng(seed).choice(candidates, min(len(candidates), wanted),
                                                replace=False)
    train.flat[chosen] = prediction.flat[chosen]
    return len(chosen)


def pseudo_margin(right: np.ndarray, uncertainty: np.ndarray) -> Optional[float]:
    """The lowest of ``MARGINS`` at which the parent was at least ``PSEUDO_PRECISION`` right on
    the reviewed pixels (``right``: whether it was, per pixel; ``uncertainty``: its uint8
    uncertainty there) with at least ``MIN_EVIDENCE_PIXELS`` of them that sure; None if none."""
    for margin in MARGINS:
        sure = _sure(uncertainty, margin)
        if sure.sum() >= MIN_EVIDENCE_PIXELS and right[sure].mean() >= PSEUDO_PRECISION:
            return margin
    return None


def _sure(uncertainty: np.ndarray, margin: float) -> np.ndarray:
    """Where the uint8 uncertainty says the margin p1 − p2 was at least ``margin`` (never on
    nodata, 255)."""
    return uncertainty <= (1 - margin) * SCALE


def class_table(classes: Sequence[Mapping[str, Any]]) -> str:
    """``value name`` pairs for messages."""
    return ", ".join(f"{c['value']} {c['name']}" for c in classes)
