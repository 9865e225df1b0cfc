"""``engine.train``: from rasters or polygons to a model file, a checkpoint and a report.

AdamW with warm-up then poly or cosine decay, AMP on CUDA, gradient clipping, early stopping on
the validation metric (mIoU, or change-class F1), the best model written as the ``.rsmodel`` and
the last state as ``<out>.last.ckpt`` (both atomically), exact resume, DistributedDataParallel
under ``torchrun`` (rank 0 writes).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from .. import __version__
from ..io.classes import CHANGE_CLASSES
from ..formats.catalog import NEEDS_AUX
from ..compute.backend import amp_dtype
from ..compute.devices import resolve_device
from ..compute.backend import logits_of
from ..jobs import CancelledFn, EngineError, InputError, Job, ProgressFn, check_outputs
from ..analysis.metrics import ConfusionMatrix, change_scores, scores
from ..formats.modelfile import load_model, save_model
from ..models import architecture, build
from ..io.radiometry import check_mode
from . import finetune
from .augment import SensorShift
from .data import (IMAGERY_GROUPS, LabelSpec, Scene, SceneReader, WindowDataset, band_names,
                   band_statistics,
                   discover_label_classes, polygon_label_spec, scan_cells, split_cells)
from ..weights import inspect_backbone, load_backbone
from ..io.weight_layouts import pretrained_statistics
from .encoder import hold_statistics, split_groups
from .checkpoints import TRAIN_FORMAT, checkpoint_path, load_checkpoint, save_checkpoint
from .distributed import all_sum, barrier, init_distributed
from .losses import IGNORE, build_loss
from .report import write_report
from .schedule import LRSchedule



class TrainingError(EngineError):
    """Training cannot go on (NaN loss, no data); the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Everything ``train`` needs; mirrors the CLI."""

    out: str
    images: List[str]
    task: str = "segmentation"
    arch: str = "unet"
    aux: List[str] = field(default_factory=list)
    images2: List[str] = field(default_factory=list)
    labels: List[str] = field(default_factory=list)
    polygons: Optional[str] = None
    class_field: Optional[str] = None
    ignore_value: Optional[int] = None
    epochs: int = 20
    batch_size: int = 8
    tile: int = 256
    lr: Optional[float] = None
    weight_decay: Optional[float] = None
    optimizer: Optional[str] = None
    schedule: Optional[str] = None
    warmup_steps: Optional[int] = None
    val_fraction: float = 0.2
    patience: int = 10
    grad_clip: Optional[float] = None
    loss: Optional[str] = None
    aux_weight: Optional[float] = None
    balanced: bool = False
    color_jitter: float = 0.0
    date_swap: Optional[bool] = None
    samples_per_epoch: Optional[int] = None
    time_budget_s: Optional[float] = None
    workers: int = 0
    device: str = "auto"
    init: Optional[str] = None
    init_head: str = "keep"
    normalisation: Optional[str] = None  # default: the --init model's, else DEFAULT_NORMALISATION
    sensor_augment: bool = True
    gsd: Optional[float] = None  # train at this GSD (m); default: the images' own (or --init's)
    backbone_weights: Optional[str] = None
    encoder_lr_scale: Optional[float] = None
    freeze_encoder_epochs: Optional[int] = None  # default: a third of the epochs with --init
    resume: Optional[str] = None
    seed: int = 0
    hparams: Dict[str, Any] = field(default_factory=dict)


# Used where neither the user nor the architecture's RECIPE sets a value.
DEFAULT_NORMALISATION = "image"  # transfers best to other sensors (docs/benchmarks.md)
FINETUNE_FREEZE_SHARE = 3  # with --init the encoder is frozen for epochs // 3
DEFAULTS = {"lr": 1e-3, "weight_decay": 1e-4, "schedule": "poly", "grad_clip": 1.0,
            "aux_weight": 0.2, "date_swap": True, "optimizer": "adamw"}
OPTIMIZERS = ("adamw", "adam", "sgd")


def _architecture_module(arch: str) -> Any:
    import sys
    return sys.modules[architecture(arch).builder.__module__]


def recipe_of(arch: str) -> Dict[str, Any]:
    """The training recipe an architecture module publishes as ``RECIPE`` (may be empty)."""
    return dict(getattr(_architecture_module(arch), "RECIPE", {}))


def resolve_recipe(cfg: TrainConfig, steps_per_epoch: int) -> Dict[str, Any]:
    """Hyper-parameters in force: the user's, else the architecture's recipe, else defaults."""
    recipe = recipe_of(cfg.arch)
    out = {}
    for key, default in DEFAULTS.items():
        value = getattr(cfg, key)
        out[key] = value if value is not None else recipe.get(key, default)
    out["loss"] = cfg.loss or recipe.get("loss") or ("bce_dice" if cfg.task == "change" else "ce")
    recipe_warmup = recipe.get("warmup_steps",
                               int(recipe.get("warmup_epochs", 1) * steps_per_epoch))
    out["warmup_steps"] = cfg.warmup_steps if cfg.warmup_steps is not None else recipe_warmup
    out["warmup_start"] = recipe.get("warmup_start_lr", 0.0) / out["lr"] if out["lr"] else 0.0
    out["momentum"] = recipe.get("momentum", 0.9)
    out["betas"] = tuple(recipe.get("betas", (0.9, 0.999)))
    out["plateau_factor"] = recipe.get("plateau_factor", 0.1)
    out["plateau_patience"] = recipe.get("plateau_patience", 10)
    out["step_every"] = int(recipe.get("lr_step_epochs", 30) * steps_per_epoch)
    out["step_gamma"] = recipe.get("lr_step_gamma", 0.1)
    # a published pre-trained encoder moves 10× slower than the new decoder unless told otherwise
    out["encoder_lr_scale"] = (cfg.encoder_lr_scale if cfg.encoder_lr_scale is not None
                               else 0.1 if cfg.backbone_weights else 1.0)
    # fine-tuning (--init) keeps the base encoder fixed for the first third of the epochs:
    # +0.04 F1 from one labelled pair, +0.006 from three (docs/benchmarks.md, Transfer)
    freeze = cfg.freeze_encoder_epochs
    if freeze is None:
        freeze = cfg.epochs // FINETUNE_FREEZE_SHARE if cfg.init else 0
    out["freeze_encoder_epochs"] = max(0, int(freeze))
    return out


def make_optimiser(net: torch.nn.Module, hp: Dict[str, Any],
                   arch: Optional[str] = None) -> torch.optim.Optimizer:
    """AdamW (default), Adam or SGD with momentum, as the recipe or the user asks.

    An architecture module's ``param_groups(net, weight_decay)`` (e.g. no decay on norms and
    biases) is used when ``arch`` publishes one; otherwise every parameter decays alike.
    """
    lr, wd = hp["lr"], hp["weight_decay"]
    groups = getattr(_architecture_module(arch), "param_groups", None) if arch else None
    params = list(groups(net, wd)) if groups else [{"params": list(net.parameters())}]
    prefixes = architecture(arch).encoder if arch else ()
    if prefixes and (hp.get("encoder_lr_scale", 1.0) != 1.0 or hp.get("freeze_encoder_epochs")):
        params = split_groups(net, params, prefixes, lr, hp.get("encoder_lr_scale", 1.0))
    kind = hp["optimizer"]
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, betas=hp["betas"])
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, betas=hp["betas"])
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=hp["momentum"])
    raise InputError(f"unknown optimizer '{kind}'; use one of {', '.join(OPTIMIZERS)}")


# ---- scenes, classes and card -----------------------------------------------------------------

def _scenes(cfg: TrainConfig) -> List[Scene]:
    if not cfg.images:
        raise InputError("give at least one training image (--image)")
    if bool(cfg.labels) == bool(cfg.polygons):
        raise InputError("give labels either as a raster (--labels) or as polygons "
                         "(--polygons with --class-field), not both / neither")
    if cfg.labels and len(cfg.labels) != len(cfg.images):
        raise InputError(f"{len(cfg.images)} image(s) but {len(cfg.labels)} label raster(s); "
                         f"give one --labels per --image")
    if cfg.polygons and not cfg.class_field:
        raise InputError("--polygons needs --class-field (the attribute holding the class)")
    for name, extra in (("--aux", cfg.aux), ("--image2", cfg.images2)):
        if extra and len(extra) != len(cfg.images):
            raise InputError(f"give one {name} per --image ({len(cfg.images)})")
    if cfg.task == "change" and not cfg.images2:
        raise InputError("change training needs the later date of each image (--image2)")
    scenes = []
    for i, img in enumerate(cfg.images):
        inputs = {("t1" if cfg.task == "change" else "image"): img}
        if cfg.task == "change":
            inputs["t2"] = cfg.images2[i]
        if cfg.aux:
            inputs["aux"] = cfg.aux[i]
        scenes.append(Scene(inputs, labels=cfg.labels[i] if cfg.labels else None,
                            polygons=cfg.polygons, class_field=cfg.class_field))
    return scenes


def _label_spec(cfg: TrainConfig, scenes: List[Scene]) -> LabelSpec:
    if cfg.task == "change":
        return ChangeLabelSpec(classes=CHANGE_CLASSES, ignore_value=cfg.ignore_value)
    if cfg.polygons:
        return polygon_label_spec(scenes)
    return discover_label_classes(scenes, cfg.ignore_value)


class ChangeLabelSpec(LabelSpec):
    """Change labels: 0 is no change, any other value (1, 255 …) is change."""

    def lut(self) -> np.ndarray:
        table = np.ones(256, dtype=np.uint8)
        table[0] = 0
        if self.ignore_value is not None and 0 <= self.ignore_value < 256:
            table[self.ignore_value] = IGNORE
        return table


def _band_count(path: str) -> int:
    from ..io.rasters import data_band_indexes, open_raster
    with open_raster(path) as ds:
        return len(data_band_indexes(ds))


def _gsd(path: str) -> Optional[float]:
    from ..io.gsd import raster_gsd
    from ..io.rasters import open_raster
    with open_raster(path) as ds:
        return raster_gsd(ds)


def _read_size(cfg: TrainConfig, scenes: List[Scene]) -> int:
    """Input pixels behind one training window: the tile, scaled when training at --gsd."""
    if cfg.gsd is None:
        return cfg.tile
    if cfg.gsd <= 0:
        raise InputError(f"--gsd must be a positive number of metres (got {cfg.gsd})")
    native = _gsd(scenes[0].inputs[scenes[0].base])
    if native is None:
        raise InputError("training at a chosen --gsd needs georeferenced images (their pixel "
                         "size is unknown); georeference them or leave out --gsd")
    return max(8, int(round(cfg.tile * cfg.gsd / native)))


def _card(cfg: TrainConfig, scenes: List[Scene], spec: LabelSpec,
          stats: Dict[str, tuple], hparams: Dict[str, Any],
          raw_stats: Dict[str, tuple]) -> Dict[str, Any]:
    from ..io.rasters import open_raster
    inputs = {}
    for group in scenes[0].inputs:
        path = scenes[0].inputs[group]
        n = _band_count(path)
        with open_raster(path) as ds:
            dtype, nodata = ds.dtypes[0], ds.nodata
        mean, std = stats[group]
        inputs[group] = {"bands": [{"index": i + 1, "name": nm}
                                   for i, nm in enumerate(band_names(path, n))],
                         "dtype": dtype, "mean": mean, "std": std, "nodata": nodata,
                         "normalisation": cfg.normalisation if group in IMAGERY_GROUPS
                         else "dataset",
                         "raw_statistics": {"mean": raw_stats[group][0],
                                            "std": raw_stats[group][1]}}
    return {"name": Path(cfg.out).stem, "task": cfg.task, "architecture": cfg.arch,
            "hparams": hparams, "inputs": inputs, "classes": spec.classes,
            "tile_size": cfg.tile, "overlap": max(8, cfg.tile // 8) // 8 * 8,
            "gsd_m": cfg.gsd or _gsd(scenes[0].inputs[scenes[0].base]), "training": {}}


def _hparams(cfg: TrainConfig, scenes: List[Scene], num_classes: int) -> Dict[str, Any]:
    base = scenes[0].inputs[scenes[0].base]
    hp = {"in_channels": _band_count(base), "num_classes": num_classes}
    if "aux" in scenes[0].inputs:
        hp["aux_channels"] = _band_count(scenes[0].inputs["aux"])
    hp.update(cfg.hparams)
    return hp


def _backbone_statistics(cfg: TrainConfig, scenes: List[Scene], stats: Dict[str, tuple],
                         normalisation: Optional[str], job: Job) -> Dict[str, tuple]:
    """The image normalisation a pre-trained backbone was trained with (8-bit data under the
    default dataset normalisation), else the data statistics unchanged."""
    from ..io.rasters import open_raster
    if not normalisation or getattr(cfg, "normalisation", None) not in (None, "dataset"):
        return stats
    out = dict(stats)
    for group in ("image", "t1", "t2"):
        if group not in stats:
            continue
        with open_raster(scenes[0].inputs[group]) as ds:
            dtype = ds.dtypes[0]
        mean, std, used = pretrained_statistics(list(stats[group][0]), list(stats[group][1]),
                                                dtype, normalisation)
        out[group] = (mean, std)
        job.log(f"{group}: {normalisation} normalisation of the backbone" if used else
                f"{group}: {dtype} data keep their own statistics (the backbone's "
                f"{normalisation} normalisation assumes 8-bit RGB)")
    return out


# ---- schedule, checkpoints --------------------------------------------------------------------

# ---- the loop ---------------------------------------------------------------------------------

def _batch_to(batch: Dict[str, torch.Tensor], device: torch.device) -> Dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _network_inputs(batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k not in ("target", "valid")}


def wants_targets(net: torch.nn.Module) -> bool:
    """True when the network's forward takes ``targets`` (label-driven training-only branches,
    e.g. CaFE's category-wise fusion); it then gets the labels in training, never in eval."""
    import inspect
    return "targets" in inspect.signature(net.forward).parameters


def _validate(net: torch.nn.Module, loader, loss_fn, device: torch.device, num_classes: int,
              world: int, autocast) -> tuple[float, np.ndarray]:
    net.eval()
    cm = ConfusionMatrix(num_classes, ignore_index=IGNORE)
    total = torch.zeros(2, dtype=torch.float64, device=device)
    with torch.inference_mode():
        for batch in loader:
            b = _batch_to(batch, device)
            with autocast():
                out = net(**_network_inputs(b))
            logits = logits_of(out).float()
            total[0] += float(loss_fn(logits, b["target"])) * len(logits)
            total[1] += len(logits)
            cm.update(b["target"], logits.argmax(1))
    matrix = torch.as_tensor(cm.matrix, dtype=torch.float64, device=device)
    all_sum(matrix, world)
    all_sum(total, world)
    return float(total[0] / total[1].clamp_min(1)), matrix.long().cpu().numpy()


def _metric(task: str, matrix: np.ndarray, names: List[str]) -> tuple[float, Dict[str, Any]]:
    if task == "change":
        s = change_scores(matrix)
        return float(s["f1"] or 0.0), s
    s = scores(matrix, names)
    return float(s["miou"] or 0.0), s


def train(config: TrainConfig | None = None, *, progress: Optional[ProgressFn] = None,
          cancelled: Optional[CancelledFn] = None, **kwargs: Any) -> Dict[str, Any]:
    """Train a model; returns a summary (paths, best epoch, validation scores)."""
    cfg = config or TrainConfig(**kwargs)
    job = Job(progress, cancelled)
    arch = architecture(cfg.arch)
    if arch.task != cfg.task:
        raise InputError(f"architecture '{cfg.arch}' is for {arch.task}, not {cfg.task}")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise InputError("epochs and batch size must be at least 1")
    if cfg.arch in NEEDS_AUX and not cfg.aux:
        raise InputError(f"architecture '{cfg.arch}' fuses the image with an auxiliary raster "
                         f"(e.g. a DSM); give one per image with --aux")
    if cfg.tile % arch.input_multiple:
        raise InputError(f"--tile must be a multiple of {arch.input_multiple} for {cfg.arch}")
    check_outputs({"--out": cfg.out}, [*cfg.images, *cfg.images2, *cfg.aux, *cfg.labels,
                                       cfg.polygons, cfg.init, cfg.resume, cfg.backbone_weights])
    backbone = inspect_backbone(cfg.arch, cfg.backbone_weights) if cfg.backbone_weights else None
    device = resolve_device(cfg.device)
    rank, world = init_distributed(device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed)

    scenes = _scenes(cfg)
    spec = _label_spec(cfg, scenes)
    base = finetune.base_card(cfg.init) if cfg.init else None
    if base is not None:
        finetune.check_compatible(base, cfg.task, _band_count(scenes[0].inputs[scenes[0].base]),
                                  [c["value"] for c in spec.classes], cfg.init_head)
        cfg = replace(cfg, **finetune.inherited(base, cfg.normalisation, cfg.gsd))
    if backbone is not None and backbone.normalisation and cfg.normalisation is None:
        # the backbone was trained on fixed (dataset-wide) input statistics: use those
        cfg = replace(cfg, normalisation="dataset")
    # a published backbone expects the normalisation it was trained with (e.g. ImageNet's)
    default = "dataset" if cfg.backbone_weights else DEFAULT_NORMALISATION
    cfg = replace(cfg, normalisation=check_mode(cfg.normalisation or default))
    read_size = _read_size(cfg, scenes)
    readers = [SceneReader(s, spec, cfg.normalisation) for s in scenes]
    try:
        job.report(0.0, "train: scanning labels")
        cells = scan_cells(readers, read_size, len(spec.classes))
        train_cells, val_cells = split_cells(cells, cfg.val_fraction, cfg.seed)
        stats = band_statistics(readers, train_cells, read_size, cfg.seed)
        raw_stats = band_statistics(readers, train_cells, read_size, cfg.seed, raw=True)
    finally:
        for r in readers:
            r.close()

    resume_state = load_checkpoint(cfg.resume) if cfg.resume else None
    if resume_state is not None:
        card = json.loads(resume_state["card"])
        stats = {g: (v["mean"], v["std"]) for g, v in card["inputs"].items()}
        hparams = card["hparams"]
    else:
        hparams = _hparams(cfg, scenes, len(spec.classes))
        if backbone is not None:
            hparams.update(backbone.hparams)
            stats = _backbone_statistics(cfg, scenes, stats, backbone.normalisation, job)
        card = _card(cfg, scenes, spec, stats, hparams, raw_stats)
    net = build(cfg.arch, **hparams).to(device)
    backbone_report = None
    if backbone is not None and resume_state is None:      # a resumed run has them already
        backbone_report = load_backbone(net, cfg.arch, cfg.backbone_weights)
        job.log(backbone_report.line())
    init_report = (finetune.init_from(net, cfg.init, cfg.arch, hparams, cfg.init_head)
                   if cfg.init else None)
    if init_report:
        job.log(f"init from {cfg.init}: {init_report['loaded']} tensors loaded, "
                f"{init_report['skipped']} new")

    samples = cfg.samples_per_epoch or max(cfg.batch_size * 4, len(train_cells) * 4)
    steps_per_epoch = max(1, math.ceil(math.ceil(samples / world) / cfg.batch_size))
    hp = resolve_recipe(cfg, steps_per_epoch)
    if cfg.init and cfg.lr is None:
        hp["lr"] *= finetune.FINETUNE_LR_SCALE
    view = dict(read_size=read_size, normalisation=cfg.normalisation)
    train_ds = WindowDataset(scenes, spec, train_cells, cfg.tile, stats, train=True,
                             length=samples, seed=cfg.seed, val_cells=val_cells,
                             balanced=cfg.balanced, date_swap=hp["date_swap"] and cfg.task == "change",
                             color_jitter=cfg.color_jitter,
                             sensor=SensorShift() if cfg.sensor_augment else None, **view)
    val_ds = WindowDataset(scenes, spec, val_cells or train_cells[:1], cfg.tile, stats,
                           train=False, **view)
    shard = lambda ds: torch.utils.data.Subset(ds, range(rank, len(ds), world))  # noqa: E731
    # Workers are not persistent: each epoch's workers must see set_epoch() (a persistent
    # worker keeps its own copy of the dataset and would replay epoch 0's windows forever).
    loader_opts = dict(batch_size=cfg.batch_size, num_workers=cfg.workers,
                       pin_memory=device.type == "cuda")
    train_loader = torch.utils.data.DataLoader(shard(train_ds), shuffle=False, drop_last=False,
                                               **loader_opts)
    val_loader = torch.utils.data.DataLoader(shard(val_ds), shuffle=False, **loader_opts)

    loss_name = hp["loss"]
    loss_fn = build_loss(loss_name, aux_weight=hp["aux_weight"])
    names = [c["name"] for c in spec.classes]
    summary = {"task": cfg.task, "architecture": cfg.arch, "loss": loss_name,
               "data": [{k: str(v) for k, v in s.inputs.items()} |
                        {"labels": str(s.labels or s.polygons)} for s in scenes],
               "train_cells": len(train_cells), "val_cells": len(val_cells),
               "tile": cfg.tile, "seed": cfg.seed, "init": init_report,
               "backbone": backbone_report.summary() if backbone_report else None,
               "hyper_parameters": {k: v for k, v in hp.items() if k != "warmup_start"},
               "engine_version": __version__}

    if getattr(net, "closed_form", False):
        return _fit_closed_form(cfg, net, card, summary, train_loader, val_loader, loss_fn,
                                device, names, rank, world, job)

    model = torch.nn.parallel.DistributedDataParallel(net) if world > 1 else net
    optimiser = make_optimiser(net, hp, cfg.arch)
    scheduler = LRSchedule(optimiser, hp["schedule"], hp["warmup_steps"],
                           steps_per_epoch * cfg.epochs, warmup_start=hp["warmup_start"],
                           plateau_factor=hp["plateau_factor"],
                           plateau_patience=hp["plateau_patience"],
                           step_every=hp["step_every"], step_gamma=hp["step_gamma"])
    amp = amp_dtype(device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp else contextlib.nullcontext

    history: List[Dict[str, Any]] = []
    best, bad_epochs, start_epoch = -1.0, 0, 0
    if resume_state is not None:
        net.load_state_dict(resume_state["model"])
        optimiser.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        if resume_state.get("scaler"):
            scaler.load_state_dict(resume_state["scaler"])
        torch.set_rng_state(resume_state["torch_rng"])
        history = json.loads(resume_state["history"])
        best, bad_epochs = float(resume_state["best"]), int(resume_state["bad_epochs"])
        start_epoch = int(resume_state["epoch"])
        job.log(f"resumed from {cfg.resume} at epoch {start_epoch + 1}")

    ckpt = checkpoint_path(cfg.out)
    needs_targets = wants_targets(net)
    started = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        train_ds.set_epoch(epoch)
        model.train()
        frozen = epoch < hp["freeze_encoder_epochs"]
        scheduler.hold_encoder(frozen)
        if frozen:
            hold_statistics(net, arch.encoder)
            if epoch == start_epoch:
                job.log(f"encoder ({', '.join(arch.encoder) or 'none'}) frozen until epoch "
                        f"{hp['freeze_encoder_epochs'] + 1}")
        running = torch.zeros(2, dtype=torch.float64, device=device)
        t0 = time.perf_counter()
        for step, batch in enumerate(train_loader):
            job.check()
            b = _batch_to(batch, device)
            inputs = _network_inputs(b)
            if needs_targets:
                inputs["targets"] = b["target"]
            with autocast():
                out = model(**inputs)
                loss = loss_fn(out, b["target"])
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"the loss became {float(loss.detach())} at epoch {epoch + 1}, batch {step + 1}; "
                    f"training stopped. The last good checkpoint is {ckpt if ckpt.exists() else 'none yet'}. "
                    f"Lower the learning rate (--lr, now {hp['lr']}) or check the inputs for "
                    f"extreme values")
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if hp["grad_clip"] > 0:
                scaler.unscale_(optimiser)
                torch.nn.utils.clip_grad_norm_(net.parameters(), hp["grad_clip"])
            scaler.step(optimiser)
            scaler.update()
            scheduler.step()
            running[0] += float(loss.detach()) * len(b["target"])
            running[1] += len(b["target"])
            job.report((epoch + (step + 1) / steps_per_epoch) / cfg.epochs,
                       f"epoch {epoch + 1}/{cfg.epochs} loss {float(running[0] / running[1]):.4f}")
        all_sum(running, world)
        train_loss = float(running[0] / running[1].clamp_min(1))
        train_seconds = time.perf_counter() - t0
        val_loss, matrix = _validate(model, val_loader, loss_fn, device, len(spec.classes), world,
                                     autocast)
        metric, val_scores = _metric(cfg.task, matrix, names)
        entry = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
                 "metric": metric, "lr": scheduler.lr,
                 "samples_per_s": int(running[1]) / max(train_seconds, 1e-9),
                 "val": _compact(val_scores)}
        history.append(entry)
        scheduler.epoch_end(metric)
        improved = metric > best
        if improved:
            best, bad_epochs = metric, 0
        else:
            bad_epochs += 1
        metric_name = "F1(change)" if cfg.task == "change" else "mIoU"
        job.log(f"epoch {epoch + 1}/{cfg.epochs}: train loss {train_loss:.4f}, val loss "
                f"{val_loss:.4f}, {metric_name} {metric:.4f}" + (" (best)" if improved else ""))
        if rank == 0:
            if improved:
                card["training"] = _training_summary(summary, history, epoch + 1, val_scores,
                                                     metric_name, metric)
                save_model(cfg.out, card, net)
            save_checkpoint(ckpt, {
                "format": TRAIN_FORMAT, "card": json.dumps(card), "model": net.state_dict(),
                "optimizer": optimiser.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "epoch": epoch + 1, "history": json.dumps(history), "best": best,
                "bad_epochs": bad_epochs, "torch_rng": torch.get_rng_state(),
                "config": json.dumps(asdict(cfg))})
        barrier(world)
        if bad_epochs >= cfg.patience:
            job.log(f"early stop: no improvement of {metric_name} for {cfg.patience} epochs")
            break
        if _over_budget(cfg, started, world):
            job.log(f"time budget of {cfg.time_budget_s:.0f} s reached after epoch {epoch + 1}")
            break

    report = {}
    if rank == 0:
        report = write_report(cfg.out, history, metric_name)
        _record_epochs_run(cfg.out, len(history))
    barrier(world)
    job.report(1.0, "train: done")
    return {"model": str(cfg.out), "checkpoint": str(ckpt), **report,
            "best_metric": best, "epochs_run": len(history),
            "seconds": time.perf_counter() - started, "rank": rank, "world_size": world}


def _over_budget(cfg: TrainConfig, started: float, world: int) -> bool:
    """True once the time budget is spent (rank 0 decides, so all ranks stop together)."""
    if cfg.time_budget_s is None:
        return False
    flag = torch.tensor([float(time.perf_counter() - started >= cfg.time_budget_s)])
    if world > 1:
        torch.distributed.broadcast(flag, src=0)
    return bool(flag.item())


def _record_epochs_run(out: str, epochs: int) -> None:
    """The best model was saved mid-run; its card also says how long training went on."""
    best = load_model(out)
    best.card["training"]["epochs"] = epochs
    save_model(out, best.card, best.network)


def _compact(s: Dict[str, Any]) -> Dict[str, Any]:
    """Validation scores small enough for the history (per-class IoU by name)."""
    out = {k: v for k, v in s.items() if not isinstance(v, (list, dict))}
    if "per_class" in s:
        out["iou"] = {c["name"]: c["iou"] for c in s["per_class"]}
    return out


def _training_summary(summary: Dict[str, Any], history: List[Dict[str, Any]], best_epoch: int,
                      val_scores: Dict[str, Any], metric_name: str, metric: float) -> Dict[str, Any]:
    return {**summary, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "epochs": len(history), "best_epoch": best_epoch,
            "metrics": {metric_name: metric, **_compact(val_scores)}}


def _fit_closed_form(cfg: TrainConfig, net: torch.nn.Module, card: Dict[str, Any],
                     summary: Dict[str, Any], train_loader, val_loader, loss_fn,
                     device: torch.device, names: List[str], rank: int, world: int,
                     job: Job) -> Dict[str, Any]:
    """Fit a closed-form classifier (e.g. minimum distance) from one pass over the windows."""
    started = time.perf_counter()
    n = max(1, len(train_loader))
    for step, batch in enumerate(train_loader):
        job.check()
        b = _batch_to(batch, device)
        net.accumulate(b["image"], b["target"], IGNORE)
        job.report((step + 1) / n * 0.9, f"fit {step + 1}/{n}")
    for buf in (net.sums, net.counts):
        all_sum(buf, world)
    net.finalise()
    val_loss, matrix = _validate(net, val_loader, loss_fn, device, len(names), world,
                                 contextlib.nullcontext)
    metric, val_scores = _metric(cfg.task, matrix, names)
    history = [{"epoch": 1, "train_loss": None, "val_loss": val_loss, "metric": metric,
                "lr": None, "samples_per_s": None, "val": _compact(val_scores)}]
    job.log(f"fitted {cfg.arch}: val mIoU {metric:.4f}")
    report = {}
    if rank == 0:
        card["training"] = _training_summary(summary, history, 1, val_scores, "mIoU", metric)
        save_model(cfg.out, card, net)
        report = write_report(cfg.out, history, "mIoU")
    barrier(world)
    job.report(1.0, "train: done")
    return {"model": str(cfg.out), "checkpoint": None, **report, "best_metric": metric,
            "epochs_run": 1, "seconds": time.perf_counter() - started, "rank": rank,
            "world_size": world}
