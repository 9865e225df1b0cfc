"""``engine.train``: from rasters or polygons to a model file, a checkpoint and a report.

AdamW with warm-up then poly or cosine decay, AMP on CUDA, gradient clipping, early stopping on
the validation metric (mIoU, or change-class F1), the best model written as the ``.rsmodel``
(the last epoch's when no cell is left for validation) and the last state as
``<out>.last.ckpt`` (both atomically), exact resume, DistributedDataParallel under ``torchrun``
(rank 0 writes).

This module is the loop itself; the run's inputs and model card are in :mod:`.inputs`, the
hyper-parameters in force in :mod:`.config`, validation and its scores in :mod:`.validation`,
and what is written to disk on the way (checkpoint, resume, best model) in :mod:`.checkpoints`.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import time
from dataclasses import asdict, astuple, replace
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from .. import __version__
from ..formats.catalog import NEEDS_AUX
from ..compute.backend import amp_dtype
from ..compute.devices import resolve_device
from ..jobs import (CancelledFn, EngineError, InputError, Job, ProgressFn, check_outputs,
                   job_outputs)
from ..models import architecture, build
from ..io.radiometry import check_mode
from . import finetune
from .budget import PROBE_STEPS, EpochPlan, TimeBudget, epoch_samples, resumed_plan
from .config import (DEFAULT_NORMALISATION, TrainConfig, architecture_name, balanced_sampling,
                     freeze_epochs, make_optimiser, recipe_of, resolve_recipe, sensor_plan)
from .data import (SceneReader, WindowDataset, band_statistics, batch_to, network_inputs,
                   scan_cells, split_cells)
from ..weights import inspect_backbone, load_backbone
from .encoder import hold_statistics
from .checkpoints import (checkpoint_path, load_checkpoint, record_epochs_run, restore_train_state,
                          save_train_state, write_best_model)
from .distributed import all_sum, barrier, init_distributed
from .verdict import training_warnings
from .inputs import (backbone_statistics, band_count, band_notes, fit_tile, label_spec,
                     model_card, network_hparams, training_scenes, window_read_size)
from .losses import IGNORE, build_loss
from .report import write_report
from .schedule import LRSchedule, fit_to_run
from .validation import compact_scores, metric_of, validate


class TrainingError(EngineError):
    """Training cannot go on (NaN loss, no data); the last good checkpoint is kept."""


def wants_targets(net: torch.nn.Module) -> bool:
    """True when the network's forward takes ``targets`` (label-driven training-only branches,
    e.g. CaFE's category-wise fusion); it then gets the labels in training, never in eval."""
    import inspect
    return "targets" in inspect.signature(net.forward).parameters


def network_of_run(cfg: TrainConfig, base: Optional[Dict[str, Any]],
                   resume_state: Optional[Dict[str, Any]]) -> TrainConfig:
    """``cfg`` with its architecture and hyper-parameters settled: a fine-tune's come from its
    --init model's card ``base`` (:func:`finetune.inherited_network`), a resumed run's from its
    checkpoint ``resume_state``, else the given architecture or the task's default."""
    if resume_state is not None:
        if cfg.arch is not None:
            return cfg
        return replace(cfg, arch=json.loads(resume_state["card"])["architecture"])
    if base is not None:
        return replace(cfg, **finetune.inherited_network(base, cfg.arch, cfg.hparams))
    return replace(cfg, arch=architecture_name(cfg))


@job_outputs
def train(config: TrainConfig | None = None, *, progress: Optional[ProgressFn] = None,
          cancelled: Optional[CancelledFn] = None, **kwargs: Any) -> Dict[str, Any]:
    """Train a model; returns a summary (paths, best epoch, validation scores)."""
    cfg = config or TrainConfig(**kwargs)
    base = finetune.base_card(cfg.init) if cfg.init else None
    resume_state = load_checkpoint(cfg.resume) if cfg.resume else None
    cfg = network_of_run(cfg, base, resume_state)
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
    # the budget covers the whole run: reading the labels and statistics count too
    budget = TimeBudget(cfg.time_budget_s, world)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed)

    scenes = training_scenes(cfg)
    spec = label_spec(cfg, scenes)
    for note in band_notes(scenes) + spec.notes:
        job.log(note)
    gsd_from_init = base is not None and cfg.gsd is None and base.get("gsd_m") is not None
    if base is not None:
        finetune.check_compatible(base, cfg.task, band_count(scenes[0].inputs[scenes[0].base],
                                                             cfg.bands),
                                  [c["value"] for c in spec.classes], cfg.init_head)
        cfg = replace(cfg, **finetune.inherited(base, cfg.normalisation, cfg.gsd))
    if backbone is not None and backbone.normalisation and cfg.normalisation is None:
        # the backbone was trained on fixed (dataset-wide) input statistics: use those
        cfg = replace(cfg, normalisation="dataset")
    # a published backbone expects the normalisation it was trained with (e.g. ImageNet's)
    default = "dataset" if cfg.backbone_weights else DEFAULT_NORMALISATION
    cfg = replace(cfg, normalisation=check_mode(cfg.normalisation or default))
    read_size = window_read_size(cfg, scenes, gsd_from_init)
    readers = [SceneReader(s, spec, cfg.normalisation) for s in scenes]
    try:
        cfg, read_size, tile_note = fit_tile(cfg, [(r.width, r.height) for r in readers],
                                             read_size, arch.input_multiple)
        if tile_note:
            job.log(tile_note)
        job.report(0.0, "train: scanning labels")
        cells = scan_cells(readers, read_size, len(spec.classes))
        train_cells, val_cells = split_cells(cells, cfg.val_fraction, cfg.seed)
        stats = band_statistics(readers, train_cells, read_size, cfg.seed)
        raw_stats = band_statistics(readers, train_cells, read_size, cfg.seed, raw=True)
    finally:
        for r in readers:
            r.close()

    if resume_state is not None:
        card = json.loads(resume_state["card"])
        stats = {g: (v["mean"], v["std"]) for g, v in card["inputs"].items()}
        hparams = card["hparams"]
    else:
        hparams = network_hparams(cfg, scenes, len(spec.classes))
        if backbone is not None:
            hparams.update(backbone.hparams)
            stats = backbone_statistics(cfg, scenes, stats, backbone.normalisation, job)
        card = model_card(cfg, scenes, spec, stats, hparams, raw_stats)
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

    samples = epoch_samples(cfg.samples_per_epoch, cfg.batch_size, len(train_cells))
    steps_per_epoch = max(1, math.ceil(math.ceil(samples / world) / cfg.batch_size))
    hp = resolve_recipe(cfg, steps_per_epoch)
    if cfg.init and cfg.lr is None:
        hp["lr"] *= finetune.FINETUNE_LR_SCALE
    view = dict(read_size=read_size, normalisation=cfg.normalisation)
    sensor = sensor_plan(cfg)
    train_ds = WindowDataset(scenes, spec, train_cells, cfg.tile, stats, train=True,
                             length=samples, seed=cfg.seed, val_cells=val_cells,
                             balanced=balanced_sampling(cfg),
                             date_swap=hp["date_swap"] and cfg.task == "change",
                             color_jitter=cfg.color_jitter,
                             sensor=sensor, **view)
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
    # Without validation cells (--val-fraction 0, or one labelled cell) the score comes from a
    # training cell: it would pick an epoch by noise, so the last epoch is kept, no early stop.
    keep_last = not val_cells
    if keep_last and cfg.val_fraction > 0:
        job.log("the labels fill a single cell, so none is held out for validation: the last "
                "epoch is kept and the model is not judged; label a larger area to validate")
    plan = EpochPlan(cfg.epochs, steps_per_epoch)
    best_matrix = matrix = None  # the saved model's and the last validation matrices
    if resume_state is not None:
        history, best, bad_epochs, start_epoch = restore_train_state(resume_state, net, optimiser,
                                                                     scheduler, scaler)
        plan = resumed_plan(json.loads(resume_state["config"]), plan)
        scheduler.resize(fit_to_run(recipe_of(cfg.arch), plan.steps_per_epoch, plan.epochs,
                                    cfg.patience, cfg.warmup_steps))
        hp["freeze_encoder_epochs"] = freeze_epochs(cfg, plan.epochs)
        job.log(f"resumed from {cfg.resume} at epoch {start_epoch + 1}")

    ckpt = checkpoint_path(cfg.out)
    needs_targets = wants_targets(net)
    metric_name = "F1(change)" if cfg.task == "change" else "mIoU"
    started, probed, stopped = budget.started, cfg.time_budget_s is None, False
    epoch = start_epoch
    while epoch < plan.epochs and not stopped:
        train_ds.set_epoch(epoch, sensor is not None and epoch < sensor.epochs(plan.epochs))
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
            b = batch_to(batch, device)
            inputs = network_inputs(b)
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
            job.report((epoch + (step + 1) / plan.steps_per_epoch) / plan.epochs,
                       f"epoch {epoch + 1}/{plan.epochs} loss {float(running[0] / running[1]):.4f}")
            if step == 0:
                first_step_done = time.perf_counter()
            if not probed and (step == PROBE_STEPS or step + 1 == plan.steps_per_epoch):
                probed = True
                timed = (time.perf_counter() - first_step_done) / step if step \
                    else time.perf_counter() - t0
                fitted = budget.fit(plan, epoch, step + 1, timed, len(val_loader))
                if fitted != plan:
                    plan = fitted
                    scheduler.resize(fit_to_run(recipe_of(cfg.arch), plan.steps_per_epoch,
                                                plan.epochs, cfg.patience, cfg.warmup_steps))
                    hp["freeze_encoder_epochs"] = freeze_epochs(cfg, plan.epochs)  # from the next epoch
                    job.log(f"time budget {cfg.time_budget_s:.0f} s at {timed:.2f} s a step: "
                            f"{plan.epochs} epoch(s) of {plan.steps_per_epoch} step(s)")
            if step + 1 >= plan.steps_per_epoch:
                break
            if budget.spent():
                stopped = True
                break
        all_sum(running, world)
        train_loss = float(running[0] / running[1].clamp_min(1))
        train_seconds = time.perf_counter() - t0
        val_loss, matrix = validate(model, val_loader, loss_fn, device, len(spec.classes), world,
                                    autocast)
        metric, val_scores = metric_of(cfg.task, matrix, names)
        entry = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
                 "metric": metric, "lr": scheduler.lr,
                 "samples_per_s": int(running[1]) / max(train_seconds, 1e-9),
                 "val": compact_scores(val_scores)}
        history.append(entry)
        scheduler.epoch_end(metric)
        improved = keep_last or metric > best
        if improved:
            best, bad_epochs, best_matrix = metric, 0, matrix
        else:
            bad_epochs += 1
        # with no validation cell the scores are a training cell's: say so, not "val"
        checked = "a training cell's" if keep_last else "val"
        job.log(f"epoch {epoch + 1}/{plan.epochs}: train loss {train_loss:.4f}, {checked} loss "
                f"{val_loss:.4f}, {metric_name} {metric:.4f}"
                + (" (best)" if improved and not keep_last else ""))
        if rank == 0:
            if improved:
                write_best_model(cfg.out, card, net, _training_summary(
                    summary, history, epoch + 1, val_scores, metric_name, metric))
            save_train_state(ckpt, card, net, optimiser, scheduler, scaler, epoch + 1, history,
                             best, bad_epochs, {**asdict(cfg), "plan": list(astuple(plan))})
        barrier(world)
        epoch += 1
        if bad_epochs >= cfg.patience:
            job.log(f"early stop: no improvement of {metric_name} for {cfg.patience} epochs")
            break
        if stopped or budget.spent():
            stopped = True
            job.log(f"time budget of {cfg.time_budget_s:.0f} s reached in epoch {epoch}")

    report = {}
    if rank == 0:
        report = write_report(cfg.out, history, metric_name)
        record_epochs_run(cfg.out, len(history))
    barrier(world)
    # a resumed run that never improved judges its last epoch (the saved model's is not kept)
    # a training cell's scores cannot judge the model: no verdict without validation cells
    warnings = [] if keep_last else _warn(job, best_matrix if best_matrix is not None else matrix,
                                          names)
    job.report(1.0, "train: done")
    return {"model": str(cfg.out), "checkpoint": str(ckpt), **report, "warnings": warnings,
            "best_metric": best, "epochs_run": len(history),
            "seconds": time.perf_counter() - started, "rank": rank, "world_size": world}


def _warn(job: Job, matrix: Optional[np.ndarray], names: List[str]) -> List[str]:
    """Log :func:`training_warnings` of ``matrix`` (none without one) and return them."""
    warnings = training_warnings(matrix, names) if matrix is not None else []
    for w in warnings:
        job.log(f"warning: {w}")
    return warnings


def _training_summary(summary: Dict[str, Any], history: List[Dict[str, Any]], best_epoch: int,
                      val_scores: Dict[str, Any], metric_name: str, metric: float) -> Dict[str, Any]:
    """The card's record of the run, its best epoch and that epoch's validation scores."""
    return {**summary, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "epochs": len(history), "best_epoch": best_epoch,
            "metrics": {metric_name: metric, **compact_scores(val_scores)}}


def _fit_closed_form(cfg: TrainConfig, net: torch.nn.Module, card: Dict[str, Any],
                     summary: Dict[str, Any], train_loader, val_loader, loss_fn,
                     device: torch.device, names: List[str], rank: int, world: int,
                     job: Job) -> Dict[str, Any]:
    """Fit a closed-form classifier (e.g. minimum distance) from one pass over the windows."""
    started = time.perf_counter()
    n = max(1, len(train_loader))
    for step, batch in enumerate(train_loader):
        job.check()
        b = batch_to(batch, device)
        net.accumulate(b["image"], b["target"], IGNORE)
        job.report((step + 1) / n * 0.9, f"fit {step + 1}/{n}")
    for buf in (net.sums, net.counts):
        all_sum(buf, world)
    net.finalise()
    val_loss, matrix = validate(net, val_loader, loss_fn, device, len(names), world,
                                contextlib.nullcontext)
    metric, val_scores = metric_of(cfg.task, matrix, names)
    history = [{"epoch": 1, "train_loss": None, "val_loss": val_loss, "metric": metric,
                "lr": None, "samples_per_s": None, "val": compact_scores(val_scores)}]
    job.log(f"fitted {cfg.arch}: val mIoU {metric:.4f}")
    report = {}
    if rank == 0:
        write_best_model(cfg.out, card, net,
                         _training_summary(summary, history, 1, val_scores, "mIoU", metric))
        report = write_report(cfg.out, history, "mIoU")
    barrier(world)
    warnings = _warn(job, matrix, names)
    job.report(1.0, "train: done")
    return {"model": str(cfg.out), "checkpoint": None, **report, "warnings": warnings,
            "best_metric": metric,
            "epochs_run": 1, "seconds": time.perf_counter() - started, "rank": rank,
            "world_size": world}
