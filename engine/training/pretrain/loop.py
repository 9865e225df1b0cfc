"""The pre-training stage: checks, band statistics, the DDP-ready loop with its cosine learning
rate, the resumable ``<out>.last.ckpt`` and the ``pretrained`` model file of the best epoch."""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ... import __version__
from ...compute.devices import resolve_device
from ...jobs import CancelledFn, InputError, Job, ProgressFn, check_outputs, job_outputs
from ...formats.modelfile import load_model, save_model
from ...models import architecture, build
from ..checkpoints import PRETRAIN_FORMAT, checkpoint_path, load_checkpoint, save_checkpoint
from ..distributed import all_sum, barrier, init_distributed
from .dataset import TwoViewDataset
from .losses import GLCObjective


def _cosine_lr(base: float, floor: float, step: int, total: int) -> float:
    t = min(step / max(1, total), 1.0)
    return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * t))


def _check_images(images: Sequence[str], window: int) -> int:
    from ...io.rasters import data_band_indexes, open_raster
    if not images:
        raise InputError("give at least one image to pre-train on (--image)")
    counts = []
    for path in images:
        with open_raster(path) as ds:
            counts.append(len(data_band_indexes(ds) or [1]))
            if ds.width < window or ds.height < window:
                raise InputError(f"{path} is {ds.width}×{ds.height} px, smaller than the "
                                 f"pre-training window {window}; use a smaller --crop "
                                 f"(the window is crop × 8/7) or --window")
    if len(set(counts)) > 1:
        detail = ", ".join(f"{Path(p).name}: {n}" for p, n in zip(images, counts))
        raise InputError(f"all pre-training images must have the same number of bands ({detail}); "
                         f"pre-train separately per sensor or select matching bands first")
    return counts[0]


def _statistics(images: Sequence[str], window: int, seed: int) -> Tuple[List[float], List[float]]:
    from ..data import Cell, LabelSpec, Scene, SceneReader, band_statistics
    readers = [SceneReader(Scene({"image": p}), LabelSpec(classes=[])) for p in images]
    try:
        cells = [Cell(s, x, y, np.zeros(1, np.int64)) for s, r in enumerate(readers)
                 for y in range(0, r.height - window + 1, window)
                 for x in range(0, r.width - window + 1, window)]
        return band_statistics(readers, cells, window, seed)["image"]
    finally:
        for r in readers:
            r.close()


def _card(images: Sequence[str], out: str, arch: str, hparams: Dict[str, Any],
          stats: Tuple[List[float], List[float]], window: int) -> Dict[str, Any]:
    from ...io.rasters import open_raster
    from ..data import band_names
    from ..inputs import image_gsd
    n = hparams["in_channels"]
    with open_raster(images[0]) as ds:
        dtype, nodata = ds.dtypes[0], ds.nodata
    multiple = architecture(arch).input_multiple
    tile = max(multiple, math.ceil(window / multiple) * multiple)
    return {"name": Path(out).stem, "task": "pretrained", "architecture": arch,
            "hparams": hparams,
            "inputs": {"image": {"bands": [{"index": i + 1, "name": nm}
                                           for i, nm in enumerate(band_names(images[0], n))],
                                 "dtype": dtype, "mean": stats[0], "std": stats[1],
                                 "nodata": nodata}},
            "classes": [], "tile_size": tile, "overlap": max(8, tile // 8) // 8 * 8,
            "gsd_m": image_gsd(images[0]), "training": {}}


def _deep_channels(network: nn.Module, arch: str, in_channels: int) -> int:
    size = max(32, 2 * architecture(arch).input_multiple)
    was = network.training
    network.eval()
    with torch.no_grad():
        deep, _ = network.ssl_features(torch.zeros(1, in_channels, size, size))
    network.train(was)
    return int(deep.shape[1])


@job_outputs
def pretrain(images: Sequence[str], arch: str, out: str, epochs: int = 100, batch_size: int = 16,
             crop: int = 224, device: str = "auto", lr: float = 1e-3, patch_size: int = 48,
             patch_num: int = 4, lam: float = 0.5, temperature: float = 0.5, seed: int = 0,
             resume: Optional[str] = None, embedding: int = 64,
             hparams: Optional[Dict[str, Any]] = None, samples_per_epoch: Optional[int] = None,
             workers: int = 0, weight_decay: float = 1e-5, min_lr: float = 4e-8,
             window: Optional[int] = None, progress: Optional[ProgressFn] = None,
             cancelled: Optional[CancelledFn] = None) -> Dict[str, Any]:
    """Pre-train ``arch`` self-supervised (GLCNet) on ``images``; write a ``pretrained`` model.

    Returns a summary: model and checkpoint paths, epochs run, best epoch and loss, per-epoch
    history and this call's per-step losses (``step_losses``: [total, global, local]).
    """
    from ..loop import TrainingError
    job = Job(progress, cancelled)
    images = [str(p) for p in images]
    a = architecture(arch)
    if a.task != "segmentation":
        raise InputError(f"architecture '{arch}' is for {a.task}; pre-training needs a "
                         f"segmentation network (glcnet or unet)")
    if epochs < 1 or batch_size < 1 or patch_num < 1 or patch_size < 1 or embedding < 1:
        raise InputError("epochs, batch size, patch size, patch number and embedding must be "
                         "at least 1")
    if not 0 <= lam <= 1 or temperature <= 0:
        raise InputError(f"lambda must be in [0, 1] and the temperature positive "
                         f"(got {lam}, {temperature})")
    if crop % a.input_multiple:
        raise InputError(f"--crop must be a multiple of {a.input_multiple} for {arch}")
    if 2 * (patch_size + 1) > crop:
        raise InputError(f"--patch-size {patch_size} is too large for --crop {crop}; use at most "
                         f"{crop // 2 - 1}")
    window = int(window or round(crop * 8 / 7))
    if window < crop // 2:
        raise InputError(f"--window {window} is too small for --crop {crop}")
    bands = _check_images(images, window)
    check_outputs({"--out": out}, [*images, resume])
    dev = resolve_device(device)
    rank, world = init_distributed(dev)
    if world > 1 and dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(dev)
    torch.manual_seed(seed)

    resume_state = load_checkpoint(resume, PRETRAIN_FORMAT) if resume else None
    if resume_state is not None:
        card = json.loads(resume_state["card"])
        if card["architecture"] != arch:
            raise InputError(f"{resume} pre-trains '{card['architecture']}', not '{arch}'")
        hp = card["hparams"]
        stats = (card["inputs"]["image"]["mean"], card["inputs"]["image"]["std"])
        if len(stats[0]) != bands:
            raise InputError(f"{resume} was pre-trained on {len(stats[0])}-band images; these "
                             f"have {bands}")
    else:
        job.report(0.0, "pretrain: band statistics")
        stats = _statistics(images, window, seed)
        hp = {"in_channels": bands, "num_classes": embedding, **(hparams or {})}
        card = _card(images, out, arch, hp, stats, window)
    net = build(arch, **hp)
    if not hasattr(net, "ssl_features"):
        raise InputError(f"architecture '{arch}' has no self-supervised hook (ssl_features); "
                         f"pre-train glcnet or unet")
    objective = GLCObjective(net, _deep_channels(net, arch, bands), int(hp["num_classes"]),
                             patch_size, lam, temperature).to(dev)

    if samples_per_epoch is None:
        from ...io.rasters import open_raster
        samples_per_epoch = 0
        for p in images:
            with open_raster(p) as ds:
                samples_per_epoch += (ds.width // window) * (ds.height // window)
        samples_per_epoch = max(batch_size, samples_per_epoch)
    steps_per_epoch = max(1, math.ceil(math.ceil(samples_per_epoch / world) / batch_size))
    total_steps = steps_per_epoch * epochs
    dataset = TwoViewDataset(images, window, crop, stats, patch_size, patch_num,
                             samples_per_epoch, seed)
    shard = torch.utils.data.Subset(dataset, range(rank, len(dataset), world))
    loader = torch.utils.data.DataLoader(shard, batch_size=batch_size, shuffle=False,
                                         drop_last=False, num_workers=workers,
                                         pin_memory=dev.type == "cuda",
                                         # not persistent: workers must see set_epoch()
                                         persistent_workers=False)
    model = torch.nn.parallel.DistributedDataParallel(objective) if world > 1 else objective
    optimiser = torch.optim.Adam(objective.parameters(), lr=lr, betas=(0.9, 0.99),
                                 weight_decay=weight_decay)
    floor = min(min_lr, lr)
    config = {"images": images, "arch": arch, "epochs": epochs, "batch_size": batch_size,
              "crop": crop, "window": window, "lr": lr, "min_lr": floor,
              "weight_decay": weight_decay, "patch_size": patch_size, "patch_num": patch_num,
              "lam": lam, "temperature": temperature, "embedding": int(hp["num_classes"]),
              "samples_per_epoch": samples_per_epoch, "seed": seed}

    history: List[Dict[str, Any]] = []
    best, best_epoch, start_epoch, step_count = math.inf, 0, 0, 0
    if resume_state is not None:
        objective.load_state_dict(resume_state["objective"])
        optimiser.load_state_dict(resume_state["optimizer"])
        torch.set_rng_state(resume_state["torch_rng"])
        history = json.loads(resume_state["history"])
        best, best_epoch = float(resume_state["best"]), int(resume_state["best_epoch"])
        start_epoch, step_count = int(resume_state["epoch"]), int(resume_state["step"])
        job.log(f"resumed from {resume} at epoch {start_epoch + 1}")

    ckpt = checkpoint_path(out)
    step_losses: List[List[float]] = []
    started = time.perf_counter()
    try:
        for epoch in range(start_epoch, epochs):
            dataset.set_epoch(epoch)
            model.train()
            sums = torch.zeros(4, dtype=torch.float64, device=dev)
            t0 = time.perf_counter()
            for step, batch in enumerate(loader):
                job.check()
                for g in optimiser.param_groups:
                    g["lr"] = _cosine_lr(lr, floor, step_count, total_steps)
                b = {k: v.to(dev, non_blocking=True) for k, v in batch.items()}
                losses = model(b["v1"], b["v2"], b["c1"], b["c2"])
                if not torch.isfinite(losses).all():
                    raise TrainingError(
                        f"the pre-training loss became {losses.detach().tolist()} at epoch "
                        f"{epoch + 1}, batch {step + 1}; stopped. The last good checkpoint is "
                        f"{ckpt if ckpt.exists() else 'none yet'}. Lower --lr (now {lr}) or check "
                        f"the images for extreme values")
                optimiser.zero_grad(set_to_none=True)
                losses[0].backward()
                optimiser.step()
                step_count += 1
                values = losses.detach().double()
                n = len(b["v1"])
                sums[:3] += values * n
                sums[3] += n
                step_losses.append([float(v) for v in values])
                job.report((epoch + (step + 1) / steps_per_epoch) / epochs,
                           f"epoch {epoch + 1}/{epochs} loss {float(sums[0] / sums[3]):.4f}")
            all_sum(sums, world)
            seconds = time.perf_counter() - t0
            mean = (sums[:3] / sums[3].clamp_min(1)).tolist()
            entry = {"epoch": epoch + 1, "loss": mean[0], "global_loss": mean[1],
                     "local_loss": mean[2], "lr": optimiser.param_groups[0]["lr"],
                     "samples_per_s": float(sums[3]) / max(seconds, 1e-9)}
            history.append(entry)
            improved = mean[0] < best
            if improved:
                best, best_epoch = mean[0], epoch + 1
            job.log(f"epoch {epoch + 1}/{epochs}: loss {mean[0]:.4f} (global {mean[1]:.4f}, "
                    f"local {mean[2]:.4f})" + (" (best)" if improved else ""))
            if rank == 0:
                if improved:
                    card["training"] = _summary(config, history, best_epoch, best)
                    save_model(out, card, net)
                save_checkpoint(ckpt, {
                    "format": PRETRAIN_FORMAT, "card": json.dumps(card),
                    "objective": objective.state_dict(), "optimizer": optimiser.state_dict(),
                    "epoch": epoch + 1, "step": step_count, "history": json.dumps(history),
                    "best": best, "best_epoch": best_epoch, "torch_rng": torch.get_rng_state(),
                    "config": json.dumps(config)})
            barrier(world)
    finally:
        dataset.close()

    if rank == 0:
        if Path(out).exists():   # the best epoch's network; its card learns the whole history
            final = load_model(out)
            final.card["training"] = _summary(config, history, best_epoch, best)
            save_model(out, final.card, final.network)
        else:                    # resumed after the model file was removed: keep the last state
            card["training"] = _summary(config, history, best_epoch, best)
            save_model(out, card, net)
    barrier(world)
    job.report(1.0, "pretrain: done")
    return {"model": str(out), "checkpoint": str(ckpt), "epochs_run": len(history),
            "best_epoch": best_epoch, "best_loss": best, "history": history,
            "step_losses": step_losses, "seconds": time.perf_counter() - started,
            "rank": rank, "world_size": world}


def _summary(config: Dict[str, Any], history: List[Dict[str, Any]], best_epoch: int,
             best: float) -> Dict[str, Any]:
    return {"stage": "self-supervised pre-training (GLCNet: global style + local matching "
                     "contrastive)",
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "engine_version": __version__, "epochs": len(history), "best_epoch": best_epoch,
            "best_loss": best, "hyper_parameters": {k: v for k, v in config.items()
                                                    if k != "images"},
            "data": config["images"],
            "history": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in e.items()}
                        for e in history]}
