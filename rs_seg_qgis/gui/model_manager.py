"""The models folder: list, import, remove and describe model files (no widgets).

``.rsmodel`` files and ONNX models (``.onnx``: Deepness-format or exported) are both models.

Cards are read with ``engine.formats.modelfile.read_card``: a JSON header parse, no network is built
and nothing in the file is executed.
"""
from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from engine.training.checkpoints import checkpoint_path
from engine.training.report import report_paths

from .messages import InputProblem

SUFFIX = ".rsmodel"
SUFFIXES = (SUFFIX, ".onnx")


@dataclass
class ModelEntry:
    """One model file: its card, or why it cannot be read."""

    path: Path
    card: Optional[Dict[str, Any]] = None
    error: str = ""

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def task(self) -> str:
        return (self.card or {}).get("task", "")

    @property
    def short_label(self) -> str:
        """'buildings · unet, 4 classes' for the model combos (the task is implied there)."""
        if self.card is None:
            return f"{self.name} (unreadable)"
        n = len(self.card.get("classes", []))
        arch = self.card["architecture"]
        return f"{self.name}, {n} classes" if arch == self.name else \
            f"{self.name} · {arch}, {n} classes"

    @property
    def label(self) -> str:
        """'buildings — segmentation, unet, 4 classes' for lists and combos."""
        if self.card is None:
            return f"{self.name} — unreadable"
        return (f"{self.name} — {self.card['task']}, {self.card['architecture']}, "
                f"{len(self.card.get('classes', []))} classes")


# Cards by (path, size, mtime): the dock's combos relist the folder often and read_card reads
# the whole file, which is slow for large models.
_CARDS: Dict[Tuple[str, int, int], ModelEntry] = {}
_CARDS_MAX = 256


def read_entry(path: str | Path) -> ModelEntry:
    """The card of ``path`` as a :class:`ModelEntry` (never raises for a bad file)."""
    p = Path(path)
    try:
        stat = p.stat()
        key = (str(p.resolve()), stat.st_size, stat.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _CARDS:
        cached = _CARDS[key]
        return ModelEntry(p, copy.deepcopy(cached.card), cached.error)
    try:
        from engine.formats.modelfile import read_card
        entry = ModelEntry(p, read_card(p))
    except ImportError as exc:  # not cached: after an install the next read works
        needed = getattr(exc, "name", None) or "a package"
        return ModelEntry(p, None, f"reading this model needs {needed}, which is not installed "
                                   f"yet: Plugins ▸ RS Seg ▸ Install dependencies…")
    except Exception as exc:  # a corrupt file is listed with its problem, not a crash
        entry = ModelEntry(p, None, str(exc))
    if key is not None:
        if len(_CARDS) >= _CARDS_MAX:
            _CARDS.clear()
        _CARDS[key] = ModelEntry(p, copy.deepcopy(entry.card), entry.error)
    return entry


def list_models(folder: str | Path, task: Optional[str] = None) -> List[ModelEntry]:
    """Model files in ``folder`` sorted by name; with ``task``, only readable ones of that task."""
    entries = [read_entry(p) for p in sorted(p for suffix in SUFFIXES
                                             for p in Path(folder).glob(f"*{suffix}"))]
    if task is not None:
        entries = [e for e in entries if e.task == task]
    return entries


def import_model(source: str | Path, folder: str | Path, overwrite: bool = False) -> Path:
    """Copy a model file (after checking its card) into ``folder``; returns the copy."""
    src = Path(source)
    entry = read_entry(src)
    if entry.card is None:
        raise InputProblem(f"{src.name} is not a usable RS Seg model: {entry.error}")
    suffix = src.suffix.lower() if src.suffix.lower() in SUFFIXES else SUFFIX
    target = Path(folder) / (src.stem + suffix)
    if src.resolve() == target.resolve():
        return target
    if target.exists() and not overwrite:
        raise InputProblem(f"{target.name} is already in the models folder; remove it first "
                           f"or rename the file to import")
    Path(folder).mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, target)
    for key, side in report_paths(src).items():  # keep the training report with the model
        if side.is_file():
            shutil.copy2(side, report_paths(target)[key])
    return target


def remove_model(path: str | Path) -> None:
    """Delete a model file and the report/checkpoint files written beside it."""
    p = Path(path)
    for candidate in [p, checkpoint_path(p), *report_paths(p).values()]:
        if candidate.is_file():
            candidate.unlink()


def require_task(path: str, task: str) -> Dict[str, Any]:
    """The card of model ``path``, or :class:`InputProblem` when it is unreadable or for
    another task."""
    entry = read_entry(path)
    if entry.card is None:
        raise InputProblem(f"Cannot use model {Path(path).name}: {entry.error}")
    if entry.task != task:
        raise InputProblem(f"{Path(path).name} is a {entry.task} model; this needs a {task} "
                           f"model. Pick another model (the Models tab shows each model's "
                           f"task).")
    return entry.card


def curves_path(model: str | Path) -> Path:
    """Where training wrote the loss/metric curves of ``model``."""
    return report_paths(model)["curves"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


METRIC_NAMES = {"miou": "Mean IoU", "mf1": "Mean F1", "overall_accuracy": "Overall accuracy",
                "kappa": "Cohen's kappa", "iou": "IoU", "f1": "F1", "precision": "Precision",
                "recall": "Recall", "f1(change)": "F1 of the change class", "pixels": "Pixels",
                "tp": "True positives", "fp": "False positives", "fn": "False negatives",
                "tn": "True negatives"}


def metric_name(key: str) -> str:
    """'Mean IoU' for 'mIoU'/'miou': the words an analyst reads, not the engine's keys."""
    return METRIC_NAMES.get(key.lower(), key.replace("_", " ").capitalize())


def metrics_rows(card: Dict[str, Any]) -> List[Tuple[str, str]]:
    """Validation metrics of the card's training summary as (name, value) rows."""
    metrics = (card.get("training") or {}).get("metrics") or {}
    rows, seen = [], set()
    for key, value in metrics.items():
        if key.lower() in seen:  # the headline metric is also among the scores (mIoU / miou)
            continue
        seen.add(key.lower())
        if isinstance(value, dict):  # per-class IoU
            rows.append((f"{metric_name(key)} per class",
                         ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())))
        else:
            rows.append((metric_name(key), _fmt(value)))
    return rows


def card_rows(card: Dict[str, Any]) -> List[Tuple[str, str]]:
    """The card as (field, text) rows: task, architecture, bands, GSD, tiling, training."""
    rows = [("Name", str(card.get("name", card.get("architecture", "")))),
            ("Task", card["task"]),
            ("Architecture", card["architecture"])]
    for group, spec in (card.get("inputs") or {}).items():
        bands = ", ".join(f"{b.get('index', i + 1)}:{b['name']}"
                          for i, b in enumerate(spec.get("bands", [])))
        rows.append((f"Bands ({group})", f"{len(spec.get('bands', []))} — {bands}"
                                         f" ({spec.get('dtype', '?')})"))
    gsd = card.get("gsd_m")
    rows.append(("GSD", f"{gsd:g} m" if gsd else "unknown"))
    rows.append(("Tile / overlap", f"{card.get('tile_size')} / {card.get('overlap')} px"))
    training = card.get("training") or {}
    if training.get("status"):
        rows.append(("Training", str(training["status"])))
    if training.get("epochs"):
        rows.append(("Epochs", f"{training['epochs']} (best {training.get('best_epoch', '?')})"))
    if training.get("date"):
        rows.append(("Date", str(training["date"])))
    rows.extend((f"{k} (validation)", v) for k, v in metrics_rows(card))
    rows.append(("Engine", str(card.get("engine_version", "?"))))
    return rows
