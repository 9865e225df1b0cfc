"""``engine refine``: one round of the analyst's loop.

The parent model fine-tunes (``train --init``) for a time budget on the analyst's corrections,
the places they confirmed and a sample of its own confident predictions
(:mod:`.refine_labels`), on the window of the image around the corrections; its BatchNorm
statistics are then re-estimated on the whole image (:mod:`.recalibrate`).  A share of the
corrections is held out: the round's score is the accuracy of the new model, and of its parent,
on them.  The new model's card records its lineage: parent, round, corrections, date, scores,
and every earlier round.  ``repredict`` (:mod:`.repredict`) then segments the image, or the
current extent, with the new model and compares it with the previous round's class raster.

The time budget holds for the whole round of refine, not only its training epochs: what the
round spent before training (labels, statistics) comes off the training time, and a share is
kept for scoring, which predicts only around the held-out corrections.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import rasterio
from rasterio.windows import Window
from scipy import ndimage

from ..analysis.attributes import file_sha256
from ..analysis.metrics import confusion_matrix, scores
from ..formats.card import is_onnx
from ..formats.modelfile import load_model, read_card, save_model
from ..inference.pipeline import image_band_statistics, predict
from ..io.corrections import CLASS_FIELD, corrections_layer, read_layer, reviewed_places
from ..io.cog import check_raster_outputs
from ..io.crop import crop_vrt
from ..io.rasters import CLASS_NODATA, open_raster, parse_extent
from ..jobs import CancelledFn, InputError, Job, ModelFileError, ProgressFn, check_outputs
from ..models import architecture
from .config import DEFAULTS, TrainConfig, recipe_of
from .loop import train
from .refine_labels import (HELD_OUT_SHARE, IGNORE, PSEUDO_RATIO, RoundLabels, class_values,
                            inside, round_labels, training_window)
from .recalibrate import recalibrate_batchnorm
from .refine_start import STARTS, check_start, fresh_config, fresh_reason
from .repredict import check_difference, format_change, repredict

__all__ = ["refine", "repredict", "check_difference", "format_score", "format_change"]

COMMAND = "refine"
HELP = "fine-tune a model on the analyst's corrections (one round of the loop)"
DEFAULT_BUDGET_S = 120.0  # two minutes on a CPU: a round the analyst waits for
REFINE_TILE = 256
EPOCH_WINDOWS = 32  # short epochs: the budget fits their number, per-step checks end the run
# The budget fits this many epochs to itself (fewer, shorter ones on a slow machine); planning
# a thousand made the fit keep one epoch, since each planned epoch's validation is counted.
MAX_EPOCHS = 20
SCORE_CONTEXT_PX = 32  # image around the held-out corrections the network sees when scoring
SCORING_SHARE = 0.1  # of the budget, kept for scoring the held-out corrections
MIN_TRAIN_S = 1.0  # training gets at least this, even when the round's start ate the budget
# a round's labels are few and skewed (a class may have one correction): Dice weighs every
# class alike; on the bench loop it lifted mIoU at every round (docs/benchmarks.md)
ROUND_LOSS = "ce_dice"


def refine(model: str | Path, image: str | Path, corrections: str | Path, out: str | Path,
           class_field: str = CLASS_FIELD, prediction: Optional[str | Path] = None,
           uncertainty: Optional[str | Path] = None,
           time_budget_s: Optional[float] = DEFAULT_BUDGET_S,
           init_head: str = "keep", held_out_share: float = HELD_OUT_SHARE,
           pseudo_ratio: float = PSEUDO_RATIO, device: str = "auto", seed: int = 0,
           reviewed: Optional[str | Path] = None, max_epochs: int = MAX_EPOCHS,
           pseudo_scaled: bool = True, lr: Optional[float] = None, start: str = "auto",
           progress: Optional[ProgressFn] = None,
           cancelled: Optional[CancelledFn] = None) -> Dict[str, Any]:
    """Write ``out``, the next version of ``model`` fine-tuned on ``corrections`` of ``image``.

    ``prediction``/``uncertainty``: the parent's class and uncertainty rasters of ``image``
    (``predict --uncertainty``); computed on the corrected window when not given.
    ``reviewed``: the places checked (polygons; default: the ``reviewed`` layer of a corrections
    GeoPackage).  ``pseudo_scaled``: scale the pseudo-labels by what the parent gets right
    (:mod:`.refine_labels`); ``lr``: the learning rate (default: the architecture's recipe
    rate, not fine-tuning's reduced one: a round is a few short epochs, and at 0.3 × the rate
    they learned far less from the corrections, from round 2 on too, over six rounds on
    another sensor; docs/benchmarks.md).  ``start``: ``parent`` fine-tunes the parent,
    ``fresh`` trains its network from random weights, ``auto`` does the latter only for a
    parent from elsewhere that is wrong on most corrections
    (:mod:`.refine_start`).  Training stops so that the round ends within the time budget
    (None: no budget), or after ``max_epochs`` short epochs (``EPOCH_WINDOWS`` windows each),
    whichever comes first.  Returns the lineage entry of the round, with ``model``, ``notes``
    and the training summary.
    """
    clock = time.perf_counter()
    job = Job(progress, cancelled)
    parent = _parent_card(model)
    check_outputs({"--out": out}, [model, image, corrections, prediction, uncertainty, reviewed])
    check_start(start)
    if max_epochs < 1:
        raise InputError(f"--max-epochs must be at least 1 (got {max_epochs})")
    if time_budget_s is not None and time_budget_s <= 0:
        raise InputError(f"the time budget must be a positive number of seconds "
                         f"(got {time_budget_s})")
    notes: List[str] = []
    with open_raster(image) as ds:
        crs, transform, width, height = ds.crs, ds.transform, ds.width, ds.height
        raster_bounds = tuple(ds.bounds)
    layer = corrections_layer(corrections)
    features = read_layer(corrections, layer, crs, class_field)
    places = reviewed_places(corrections, layer, reviewed, crs)
    keep, outside = inside(features, raster_bounds)
    if outside:
        notes.append(f"correction(s) {', '.join(map(str, outside))} lie outside {Path(image).name} "
                     f"and are skipped")
    features = [features[i] for i in keep]
    reviewed = [places[i] for i in inside(places, raster_bounds)[0]]
    if not features and not reviewed:
        raise InputError(f"no correction or reviewed place lies on {Path(image).name}: draw "
                         f"corrections over the image (or mark places reviewed) first")
    values, classes = class_values(features, parent["classes"], init_head == "new")
    multiple = architecture(parent["architecture"]).input_multiple
    tile = max(multiple, min(REFINE_TILE, width, height) // multiple * multiple)
    window = training_window(features + reviewed, transform, width, height, tile, tile // 2)
    for note in notes:
        job.log(note)

    with tempfile.TemporaryDirectory(prefix=".rs-seg-refine-",
                                     dir=Path(out).parent if str(Path(out).parent) else ".") as tmp:
        work = Path(tmp)
        crop = crop_vrt(image, window, work / "image.vrt")
        stats = image_band_statistics(parent, image)  # crops as in the whole image
        job.report(0.02, "refine: the parent's predictions")
        pred, unsure, pred_nodata = _parent_predictions(model, crop, window, prediction,
                                                        uncertainty, (width, height, transform),
                                                        stats, device, work, job, cancelled)
        labels = round_labels(features, values, reviewed, window, transform, pred, unsure,
                              pred_nodata, held_out_share, pseudo_ratio, seed, pseudo_scaled,
                              learned=_learned(parent))
        for note in labels.notes:
            job.log(note)
        notes += labels.notes
        if not (labels.train != IGNORE).any():
            raise InputError("nothing to train on: the corrections hold no pixel and the parent "
                             "model is confident nowhere around them; draw larger corrections")
        label_path = _write_labels(crop, labels.train, work / "labels.tif")
        # trained inside the work folder: ``out`` appears only once it carries its lineage
        trained = work / "refined.rsmodel"
        recipe = recipe_of(parent["architecture"])
        cfg = TrainConfig(out=str(trained), images=[str(crop)], labels=[str(label_path)],
                          statistics_from=[str(image)], init=str(model),  # its network
                          init_head=init_head, classes=classes, ignore_value=IGNORE,
                          epochs=max_epochs,
                          time_budget_s=_training_budget(time_budget_s, clock), tile=tile,
                          batch_size=4, samples_per_epoch=EPOCH_WINDOWS,
                          # every labelled cell trains and the last epoch is kept: a
                          # validation cell took up to a third of a round's corrections and
                          # picked the epoch by a few pixels' noise (docs/benchmarks.md)
                          val_fraction=0.0,
                          freeze_encoder_epochs=0, device=device, seed=seed,
                          # class-balanced windows (train's default): with a fresh first round
                          # they measured ahead early and level at the end (benchmarks)
                          lr=lr if lr is not None else recipe.get("lr", DEFAULTS["lr"]),
                          loss=recipe.get("loss") or ROUND_LOSS)  # a model's own loss stays
        fresh = fresh_reason(start, parent, labels.counts["parent_agreement"])
        if fresh:
            cfg = fresh_config(cfg, parent)
            job.log(fresh)
            notes.append(fresh)
        job.log(f"refine: {labels.counts['corrections_trained']} correction(s), "
                f"{labels.counts['corrected_pixels']} corrected, "
                f"{labels.counts['confirmed_pixels']} confirmed and "
                f"{labels.counts['pseudo_pixels']} pseudo-labelled pixels"
                f"{_margin_text(labels.counts['pseudo_margin'])}; "
                f"{labels.counts['held_out']} held out")
        summary = train(cfg, progress=lambda f, m: job.report(0.05 + 0.85 * f, m)
                        if f >= 0 else job.log(m), cancelled=cancelled)
        job.report(0.9, "refine: BatchNorm statistics of the whole image")
        windows = recalibrate_batchnorm(trained, image, stats, device, seed=seed,
                                        cancelled=cancelled)
        if windows:
            job.log(f"refine: BatchNorm statistics re-estimated on {windows} windows of the "
                    f"whole image")
        score = _held_out_scores(trained, crop, labels, pred, stats, device, work, job,
                                 cancelled)
        entry = _lineage_entry(model, parent, classes, labels, score, time_budget_s,
                               "fresh" if fresh else "parent")
        if score and score["held_out"]["accuracy"] < score["parent_held_out"]["accuracy"]:
            note = ("the refined model is less accurate than its parent on the held-out "
                    "corrections: keep the parent, or correct more places and refine again")
            job.log(note)
            notes.append(note)
        job.check()
        _write_lineage(trained, out, parent, entry)
    job.report(1.0, "refine: done")
    summary = {k: v for k, v in summary.items() if k not in ("model", "checkpoint", "history",
                                                             "curves")}  # files of the work folder
    return {"model": str(out), **entry, "notes": notes, "training": summary}


def _parent_card(model: str | Path) -> Dict[str, Any]:
    if is_onnx(model):
        raise ModelFileError(f"{Path(model).name} is an ONNX model; refining needs the "
                             f".rsmodel it was exported from")
    card = read_card(model)
    if card["task"] != "segmentation":
        raise ModelFileError(f"{Path(model).name} is a {card['task']} model; refining works on "
                             f"segmentation models")
    if "aux" in card["inputs"]:
        raise ModelFileError(f"{Path(model).name} also reads an auxiliary raster; refining "
                             f"supports image-only models")
    return card


def _margin_text(margin: Optional[float]) -> str:
    return f" (margin ≥ {margin:g})" if margin is not None else ""


def _training_budget(budget: Optional[float], clock: float) -> Optional[float]:
    """Training seconds left of the round's ``budget`` (started at ``clock``), less the share
    kept for scoring."""
    if budget is None:
        return None
    spent = time.perf_counter() - clock
    return max(MIN_TRAIN_S, budget * (1 - SCORING_SHARE) - spent)


def _parent_predictions(model, crop: Path, window: Window, prediction, uncertainty, grid, stats,
                        device: str, work: Path, job: Job, cancelled: Optional[CancelledFn]):
    """The parent's class and uncertainty arrays on ``window``: read from the given rasters
    (checked to be on the image grid), else predicted on the crop."""
    if (prediction is None) != (uncertainty is None):
        raise InputError("give both the parent's class raster and its uncertainty raster "
                         "(predict --uncertainty), or neither")
    if prediction is None:
        prediction, uncertainty = work / "parent.tif", work / "parent_unsure.tif"
        predict(model, crop, prediction, uncertainty=uncertainty, device=device,
                statistics=stats, progress=lambda f, m: job.log(m) if f < 0 else None,
                cancelled=cancelled)
        window, grid = Window(0, 0, window.width, window.height), None
    arrays = []
    for path in (prediction, uncertainty):
        with open_raster(path) as ds:
            if grid is not None and (ds.width, ds.height, ds.transform) != grid:
                raise InputError(f"{Path(path).name} is not on the grid of the image; give the "
                                 f"class and uncertainty rasters predicted from this image")
            arrays.append((ds.read(1, window=window), ds.nodata))
    (pred, nodata), (unsure, _) = arrays
    return pred, unsure, int(nodata) if nodata is not None else CLASS_NODATA


def _write_labels(crop: Path, labels: np.ndarray, path: Path) -> Path:
    with rasterio.open(crop) as ds:
        profile = {"driver": "GTiff", "width": ds.width, "height": ds.height, "count": 1,
                   "dtype": "uint8", "crs": ds.crs, "transform": ds.transform, "nodata": IGNORE}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(labels[None])
    return path


def _held_out_scores(trained: Path, crop: Path, labels: RoundLabels, parent_pred: np.ndarray,
                     stats, device: str, work: Path, job: Job,
                     cancelled: Optional[CancelledFn]) -> Dict[str, Any]:
    """Accuracy and mIoU of the new model and of its parent on the held-out corrections: the
    new model predicts only the boxes around them (with ``SCORE_CONTEXT_PX`` of context),
    normalised with the whole image's ``stats``."""
    held = labels.held_out
    if not (held != IGNORE).any():
        return {}
    job.report(0.92, "refine: scoring on held-out corrections")
    new = np.full(held.shape, IGNORE, np.uint8)
    for i, (r0, c0, r1, c1) in enumerate(_score_boxes(held, SCORE_CONTEXT_PX)):
        path, box = work / f"scored{i}.tif", Window(c0, r0, c1 - c0, r1 - r0)
        predict(trained, crop_vrt(crop, box, work / f"scored{i}.vrt"), path, device=device,
                statistics=stats, cancelled=cancelled)
        with open_raster(path) as ds:
            new[r0:r1, c0:c1] = ds.read(1)
    mask = held != IGNORE
    return {"held_out": _score(held[mask], new[mask]),
            "parent_held_out": _score(held[mask], parent_pred[mask]),
            "held_out_pixels": int(mask.sum())}


def _score_boxes(held: np.ndarray, context: int) -> List[tuple]:
    """Boxes (row0, col0, row1, col1) around the held-out pixels' connected parts, grown by
    ``context`` and merged where they overlap."""
    parts, _ = ndimage.label(held != IGNORE)
    boxes = [[max(0, s[0].start - context), max(0, s[1].start - context),
              min(held.shape[0], s[0].stop + context), min(held.shape[1], s[1].stop + context)]
             for s in ndimage.find_objects(parts) if s is not None]
    pending, done = boxes, []
    while pending:
        a = pending.pop()
        hit = [b for b in pending + done
               if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]]
        if not hit:
            done.append(a)
            continue
        pending = [b for b in pending if b not in hit]
        done = [b for b in done if b not in hit]
        pending.append([min(b[0] for b in hit + [a]), min(b[1] for b in hit + [a]),
                        max(b[2] for b in hit + [a]), max(b[3] for b in hit + [a])])
    return [tuple(b) for b in done]


def _score(reference: np.ndarray, predicted: np.ndarray) -> Dict[str, Optional[float]]:
    mask = reference != IGNORE
    values = np.union1d(np.unique(reference[mask]), np.unique(predicted[mask]))
    index = {v: i for i, v in enumerate(values)}
    lut = np.zeros(256, np.int64)
    for v, i in index.items():
        lut[v] = i
    s = scores(confusion_matrix(lut[reference[mask]], lut[predicted[mask]], len(values)))
    return {"accuracy": s["overall_accuracy"], "miou": s["miou"]}


def _learned(parent: Dict[str, Any]) -> frozenset:
    """Keys of the corrections the parent's weights have trained on, in any earlier round."""
    return frozenset(k for r in (parent.get("lineage") or {}).get("rounds", [])
                     for k in r.get("trained_corrections", []))


def _lineage_entry(model, parent: Dict[str, Any], classes, labels: RoundLabels,
                   score: Dict[str, Any], budget: float, start: str) -> Dict[str, Any]:
    rounds = (parent.get("lineage") or {}).get("rounds", [])
    previous = rounds[-1]["scores"].get("held_out") if rounds and rounds[-1].get("scores") else None
    return {"round": len(rounds) + 1, "parent": str(Path(model).resolve()),
            "parent_name": parent.get("name"), "parent_sha256": file_sha256(model),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "time_budget_s": budget, "start": start, **labels.counts,
            "trained_corrections": labels.trained_keys,
            "scores": {**score, "previous_round": previous} if score else {},
            "new_classes": [c["value"] for c in classes
                            if c["value"] not in {p["value"] for p in parent["classes"]}]}


def _write_lineage(trained: Path, out: str | Path, parent: Dict[str, Any],
                   entry: Dict[str, Any]) -> None:
    """Write ``trained`` as ``out`` with the round in its card: ``lineage`` = the latest round's
    fields and every round so far."""
    refined = load_model(trained)
    rounds = list((parent.get("lineage") or {}).get("rounds", [])) + [entry]
    refined.card["lineage"] = {**entry, "rounds": rounds}
    save_model(out, refined.card, refined.network)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``refine``."""
    p.add_argument("--model", required=True, help="the model to refine (.rsmodel)")
    p.add_argument("--image", required=True, help="the raster the corrections were drawn on")
    p.add_argument("--corrections", required=True,
                   help="corrections GeoPackage (layers 'corrections' and 'reviewed') or any "
                        "polygon layer with a class field")
    p.add_argument("--class-field", default=CLASS_FIELD,
                   help=f"field holding the class value or name (default {CLASS_FIELD})")
    p.add_argument("--out", required=True, help="the refined model to write (.rsmodel)")
    p.add_argument("--prediction", help="the parent's class raster of --image (else predicted "
                                        "around the corrections)")
    p.add_argument("--uncertainty", help="the parent's uncertainty raster (predict --uncertainty)")
    p.add_argument("--reviewed", help="places checked, as polygons (default: the 'reviewed' "
                                      "layer of the corrections GeoPackage)")
    p.add_argument("--time-budget", type=float, default=DEFAULT_BUDGET_S, dest="time_budget_s",
                   metavar="SECONDS", help=f"training time (default {DEFAULT_BUDGET_S:.0f})")
    p.add_argument("--init-head", choices=("keep", "new"), default="keep",
                   help="'new' re-initialises the classifier so corrections may add classes")
    p.add_argument("--held-out", type=float, default=HELD_OUT_SHARE, dest="held_out_share",
                   help=f"share of each class's corrected pixels held out for the score "
                        f"(default {HELD_OUT_SHARE}; never a class's last correction)")
    p.add_argument("--pseudo-ratio", type=float, default=PSEUDO_RATIO,
                   help=f"confident predicted pixels kept per corrected pixel (default "
                        f"{PSEUDO_RATIO:g})")
    p.add_argument("--start", choices=STARTS, default="auto",
                   help="parent: fine-tune the model; fresh: train its network from random "
                        "weights; auto (default): fresh only when the model has no earlier "
                        "round and had less than half of the reviewed pixels right")
    p.add_argument("--repredict", metavar="RASTER",
                   help="then segment the whole image (or --extent) with the new model into "
                        "this raster")
    p.add_argument("--extent", metavar="LEFT,BOTTOM,RIGHT,TOP",
                   help="with --repredict: re-predict only this extent (image CRS); with "
                        "--prediction / --uncertainty the outputs are those rasters with the "
                        "extent re-predicted, else the extent alone")
    p.add_argument("--repredict-uncertainty", metavar="RASTER",
                   help="with --repredict: its uncertainty raster (for the next round)")
    p.add_argument("--difference", metavar="RASTER",
                   help="with --repredict and --prediction: the new class where it changed")
    p.add_argument("--max-epochs", type=int, default=MAX_EPOCHS,
                   help=f"stop after this many epochs of {EPOCH_WINDOWS} windows even within "
                        f"the time budget")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace, progress=None) -> None:
    """Run one round from parsed arguments and print its lineage and score."""
    if (args.difference or args.extent) and not args.repredict:
        raise InputError("--difference and --extent are about the re-predicted raster: add "
                         "--repredict FILE")
    bounds = parse_extent(args.extent)
    check_difference(args.prediction, args.difference)
    check_raster_outputs({"--repredict": args.repredict, "--difference": args.difference,
                          "--repredict-uncertainty": args.repredict_uncertainty},
                         [args.model, args.image, args.corrections, args.prediction,
                          args.uncertainty, args.reviewed], others={"--out": args.out})
    result = refine(args.model, args.image, args.corrections, args.out, args.class_field,
                    args.prediction, args.uncertainty, args.time_budget_s, args.init_head,
                    args.held_out_share, args.pseudo_ratio, args.device, args.seed,
                    args.reviewed, args.max_epochs, start=args.start, progress=progress)
    print(f"wrote {result['model']} (round {result['round']}, {result['corrections']} "
          f"correction(s), {result['training']['epochs_run']} epoch(s))")
    print(format_score(result))
    if args.repredict:
        again = repredict(args.out, args.image, args.repredict, args.prediction, args.difference,
                          args.repredict_uncertainty, args.device, bounds,
                          args.uncertainty, progress=progress)
        print(f"wrote {again['output']}")
        if again.get("compare"):
            print(format_change(again["compare"]))


def format_score(entry: Dict[str, Any]) -> str:
    """One line: the round's held-out accuracy next to the parent's and the previous round's."""
    s = entry.get("scores") or {}
    if not s:
        return "score: not available this round (no corrections held out)"
    return (f"held-out accuracy {_pct(s['held_out'])} on {s['held_out_pixels']} px "
            f"(parent {_pct(s['parent_held_out'])}, previous round "
            f"{_pct(s.get('previous_round'))})")


def _pct(score: Optional[Dict[str, Any]]) -> str:
    return (f"{100 * score['accuracy']:.1f} %" if score and score.get("accuracy") is not None
            else "n/a")
