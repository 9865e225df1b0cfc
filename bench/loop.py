"""`make bench-loop`: the analyst's loop (issue 26) simulated on real labelled scenes.

A U-Net trained on LoveDA tile 0 (agriculture, water, buildings; no forest) is taken to
LoveDA tile 1, the whole 1024² tile (agriculture 50 %, water 23 %, background 22 %, forest 4 %,
buildings and roads under 1 %; `--target-tile`, `--target-window`: stops 31–36 measured its
512² window at rows/columns from 512/0, where six rounds of random review label 37 % of the
scene, against 9 % of the whole tile).  `--scene isprs` takes a model trained on the ISPRS
Potsdam crop (RGB) to the Vaihingen crop (IR-R-G false colour: another sensor; six classes,
both put on the same made-up 0.3 m grid; `--cell 32` keeps six rounds near 9 % of its 512²).
Each round a simulated analyst "corrects"
K windows of the target with the true labels (the windows' label regions become correction
polygons) and the model is refined (`engine refine`, from the previous round's model; with
`--start auto`, refine's default, the first round trains the network afresh when the base model
had less than half of the reviewed pixels right) and re-predicted.  Strategies:

  strata   the K least-certain windows within appearance groups of the image, shared among
           the groups by their area (`unsure_places(image=…)`): the places the dock lists
  random   K random windows, once per seed of `--seeds` (mean ± spread reported)
  guided   the K least-certain windows (`engine.analysis.unsure`: margin uncertainty, spread
           apart, a mix of predicted classes; `--strategies` to add it, as the next two)
  plain    the K least-certain windows by mean uncertainty alone
  mixed    as guided, but every second window is the one farthest from all windows corrected
           so far (`unsure_places(explore=0.5)`)
The model-driven strategies choose without chance: each runs once per seed of `--model-seeds`,
which seeds refine's training (as the random seeds do theirs).
  scratch  a new U-Net trained from scratch on the final labels of the first model-driven
           strategy's first seed, for as many epochs as all rounds together

Training is bounded by epochs, never by the clock (base model `--base-epochs`, each refine
`--epochs` epochs of 32 windows, 12 by default, fewer than the 20 the product's 2-minute
budget fits on a quiet 2-core CPU; no time budget), so the accuracy figures do not depend on
the machine's load.  Accuracy is overall accuracy and mIoU against every labelled pixel of the
target.  `--part round` times one round alone (refine with the product's default 2-minute
budget + re-predict with uncertainty and the difference layer) on a 2048² scene (a 2×2 mosaic
of LoveDA tiles) and prints it.  Results: bench/results/loop.json, loop-round.json; figures in
docs/benchmarks.md with the machine.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from osgeo import ogr  # noqa: E402
from PIL import Image  # noqa: E402
from rasterio.features import shapes  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402
from rasterio.windows import Window  # noqa: E402
from rasterio.windows import transform as window_transform  # noqa: E402
from shapely.geometry import shape  # noqa: E402

from bench.realdata import DATA, save  # noqa: E402
from engine.analysis.metrics import confusion_matrix, scores  # noqa: E402
from engine.analysis.unsure import unsure_places  # noqa: E402
from engine.inference.pipeline import predict  # noqa: E402
from engine.io.corrections import CLASS_FIELD, CORRECTIONS_LAYER, create_corrections  # noqa: E402
from engine.training import train  # noqa: E402
from engine.training.refine import refine, repredict  # noqa: E402
from engine.training.refine_start import STARTS  # noqa: E402

WORK = ROOT / "build" / "bench-loop"
ISPRS = DATA / "isprs-loveda"
LOVEDA = ISPRS / "loveda"


def _classes(names: List[str], colours: List[List[int]]) -> List[dict]:
    return [{"value": i + 1, "name": n, "color": c} for i, (n, c) in enumerate(zip(names, colours))]


CLASSES = _classes(["background", "building", "road", "water", "barren", "forest", "agriculture"],
                   [[255, 255, 255], [255, 0, 0], [255, 255, 0], [0, 0, 255], [159, 129, 183],
                    [0, 255, 0], [255, 195, 128]])
# --scene isprs: ISPRS Potsdam (RGB, 5 cm) → Vaihingen (IR-R-G false colour, 9 cm): another sensor
ISPRS_CLASSES = _classes(["impervious", "building", "low vegetation", "tree", "car", "clutter"],
                         [[255, 255, 255], [0, 0, 255], [0, 255, 255], [0, 255, 0],
                          [255, 255, 0], [255, 0, 0]])
ISPRS_SOURCE = "potsdam/{}/2_10_0_0_512_512.png"
ISPRS_TARGET = "vaihingen/{}/area1_0_0_512_512.png"
CRS, RES = "EPSG:32650", 0.3
HPARAMS = {"base": 16, "depth": 4}


def geotiff(png: Path, out: Path, window: Optional[Tuple[int, int, int, int]] = None,
            origin=(500000.0, 3400000.0)) -> Path:
    """A window (x, y, w, h; default all of it) of a LoveDA or ISPRS PNG as a GeoTIFF on a
    made-up UTM grid (the crops are not georeferenced)."""
    a = np.asarray(Image.open(png))
    if window is not None:
        x, y, w, h = window
        a = a[y:y + h, x:x + w]
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    # written aside and renamed: a second bench run started meanwhile may be reading ``out``
    part = out.with_name(f".{out.stem}.{os.getpid()}.tif")
    with rasterio.open(part, "w", driver="GTiff", width=a.shape[2], height=a.shape[1],
                       count=a.shape[0], dtype="uint8", crs=CRS, nodata=0 if a.shape[0] == 1 else None,
                       transform=from_origin(*origin, RES, RES)) as dst:
        dst.write(a)
    os.replace(part, out)
    return out


def accuracy(prediction: Path, labels: np.ndarray) -> Dict[str, float]:
    with rasterio.open(prediction) as ds:
        pred = ds.read(1)
    mask = labels > 0
    # every class value its own row; absent classes drop out of the mIoU
    s = scores(confusion_matrix(labels[mask].astype(np.int64), pred[mask].astype(np.int64), 256))
    return {"oa": round(s["overall_accuracy"], 4), "miou": round(s["miou"], 4)}


def add_corrections(gpkg: Path, labels: np.ndarray, transform, windows: List[Tuple[int, int]],
                    cell: int) -> int:
    """The simulated analyst: each window's label regions become correction polygons.
    Returns the labelled pixels added."""
    ds = ogr.Open(str(gpkg), 1)
    lyr = ds.GetLayerByName(CORRECTIONS_LAYER)
    added = 0
    for x, y in windows:
        win = Window(x, y, cell, cell)
        block = labels[y:y + cell, x:x + cell]
        added += int((block > 0).sum())
        for geom, value in shapes(block, mask=block > 0, transform=window_transform(win, transform)):
            feat = ogr.Feature(lyr.GetLayerDefn())
            feat.SetGeometry(ogr.ForceToMultiPolygon(ogr.CreateGeometryFromWkt(shape(geom).wkt)))
            feat.SetField(CLASS_FIELD, int(value))
            lyr.CreateFeature(feat)
    ds = None
    return added


def cpu_s() -> float:
    """CPU seconds of this process and its children so far."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def pick(strategy: str, unc: Path, pred: Path, image: Path, transform, grid, chosen, k: int,
         cell: int, rng) -> List[Tuple[int, int]]:
    """The K windows the simulated analyst corrects this round."""
    if strategy == "random":
        free = [g for g in grid if g not in chosen]
        return [free[i] for i in rng.choice(len(free), k, replace=False)]
    done = [tuple(rasterio.windows.bounds(Window(x, y, cell, cell), transform)) for x, y in chosen]
    options = (dict(spread=0) if strategy == "plain" else
               dict(prediction=pred, explore=0.5 if strategy == "mixed" else 0.0,
                    image=image if strategy == "strata" else None))
    places = unsure_places(unc, count=k, cell_px=cell, exclude=done, **options)
    return [(p.window[0], p.window[1]) for p in places]


def run_strategy(name: str, strategy: str, base: Path, image: Path, labels: np.ndarray,
                 transform, rounds: int, k: int, cell: int, epochs: int, seed: int,
                 runs: Path, pseudo_scaled: bool = True, lr=None, start: str = "auto") -> dict:
    folder = runs / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    gpkg = create_corrections(folder / "corrections.gpkg", CRS)
    model, pred, unc = base, folder / "pred0.tif", folder / "unc0.tif"
    predict(model, image, pred, uncertainty=unc, device="cpu")
    rng = np.random.default_rng(seed)
    h, w = labels.shape
    grid = [(x, y) for y in range(0, h - cell + 1, cell) for x in range(0, w - cell + 1, cell)]
    chosen: List[Tuple[int, int]] = []
    labelled = 0
    history = [{"round": 0, "labelled_px": 0, **accuracy(pred, labels)}]
    print(name, history[-1], flush=True)
    for r in range(1, rounds + 1):
        picks = pick(strategy, unc, pred, image, transform, grid, chosen, k, cell, rng)
        chosen += picks
        labelled += add_corrections(gpkg, labels, transform, picks, cell)
        started = time.perf_counter()
        out = folder / f"round{r}.rsmodel"
        result = refine(model, image, gpkg, out, prediction=pred, uncertainty=unc,
                        time_budget_s=None, max_epochs=epochs, device="cpu", seed=seed + r,
                        pseudo_scaled=pseudo_scaled, lr=lr, start=start)
        refine_s = time.perf_counter() - started
        new_pred, new_unc = folder / f"pred{r}.tif", folder / f"unc{r}.tif"
        again = repredict(out, image, new_pred, previous=pred, difference=folder / f"diff{r}.tif",
                          uncertainty=new_unc, device="cpu")
        s = result.get("scores") or {}
        history.append({"round": r, "labelled_px": labelled, **accuracy(new_pred, labels),
                        "refine_s": round(refine_s, 1),
                        "round_s": round(time.perf_counter() - started, 1),
                        "epochs": result["training"]["epochs_run"],
                        "held_out_accuracy": (s.get("held_out") or {}).get("accuracy"),
                        "parent_held_out_accuracy": (s.get("parent_held_out") or {}).get("accuracy"),
                        "changed_share": round(again["compare"]["changed_share"], 4)})
        print(name, history[-1], flush=True)
        model, pred, unc = out, new_pred, new_unc
    return {"history": history, "windows": chosen}


def scratch(image: Path, labels: np.ndarray, transform, windows, cell: int, epochs: int,
            runs: Path, classes: List[dict]) -> dict:
    folder = runs / "scratch"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    sparse = np.zeros_like(labels)
    for x, y in windows:
        sparse[y:y + cell, x:x + cell] = labels[y:y + cell, x:x + cell]
    with rasterio.open(image) as ds:
        profile = dict(ds.profile, count=1, nodata=0)
    with rasterio.open(folder / "labels.tif", "w", **profile) as dst:
        dst.write(sparse[None])
    started = time.perf_counter()
    train(images=[str(image)], labels=[str(folder / "labels.tif")], out=str(folder / "m.rsmodel"),
          classes=classes, ignore_value=0, hparams=HPARAMS, tile=256, epochs=epochs,
          patience=epochs, batch_size=4, samples_per_epoch=32, device="cpu")
    seconds = time.perf_counter() - started
    predict(folder / "m.rsmodel", image, folder / "pred.tif", device="cpu")
    return {"labelled_px": int((sparse > 0).sum()), "train_s": round(seconds, 1),
            **accuracy(folder / "pred.tif", labels)}


def mosaic(tiles: List[Path], out: Path) -> Path:
    """A 2048² scene from four 1024² tiles (2×2)."""
    arrays = [np.asarray(Image.open(t)).transpose(2, 0, 1) for t in tiles]
    top, bottom = np.concatenate(arrays[:2], 2), np.concatenate(arrays[2:], 2)
    a = np.concatenate([top, bottom], 1)
    with rasterio.open(out, "w", driver="GTiff", width=a.shape[2], height=a.shape[1], count=3,
                       dtype="uint8", crs=CRS, transform=from_origin(500000.0, 3400000.0, RES, RES),
                       tiled=True) as dst:
        dst.write(a)
    return out


def time_round(base: Path, k: int, cell: int, budget: float) -> dict:
    """One round on a 2048² scene: refine (default budget) + re-predict with uncertainty and
    the difference layer; wall and CPU seconds."""
    folder = WORK / "scene2048"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    pngs = [LOVEDA / d / f"{i}.png" for d in ("img_dir",) for i in (1, 2, 0, 1)]
    image = mosaic(pngs, folder / "scene.tif")
    labels = np.concatenate([np.concatenate([np.asarray(Image.open(LOVEDA / "ann_dir" / f"{i}.png"))
                                             for i in pair], 1) for pair in ((1, 2), (0, 1))], 0)
    pred, unc = folder / "pred0.tif", folder / "unc0.tif"
    predict(base, image, pred, uncertainty=unc, device="cpu")
    with rasterio.open(image) as ds:
        transform = ds.transform
    gpkg = create_corrections(folder / "corrections.gpkg", CRS)
    places = unsure_places(unc, count=k, cell_px=cell, prediction=pred)
    add_corrections(gpkg, labels, transform, [(p.window[0], p.window[1]) for p in places], cell)
    load = os.getloadavg()[0]
    started, cpu = time.perf_counter(), cpu_s()
    result = refine(base, image, gpkg, folder / "r1.rsmodel", prediction=pred, uncertainty=unc,
                    time_budget_s=budget, device="cpu")
    refine_s, refine_cpu = time.perf_counter() - started, cpu_s() - cpu
    repredict(folder / "r1.rsmodel", image, folder / "pred1.tif", previous=pred,
              uncertainty=folder / "unc1.tif", difference=folder / "diff1.tif", device="cpu")
    total = time.perf_counter() - started
    return {"size": 2048, "budget_s": budget, "refine_s": round(refine_s, 1),
            "training_s": round(result["training"]["seconds"], 1),
            "epochs": result["training"]["epochs_run"],
            "repredict_s": round(total - refine_s, 1), "round_s": round(total, 1),
            "refine_cpu_s": round(refine_cpu, 1), "round_cpu_s": round(cpu_s() - cpu, 1),
            "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2),
            "target_met": total <= 180}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--k", type=int, default=4, help="windows corrected per round")
    p.add_argument("--cell", type=int, default=64, help="window edge (px)")
    p.add_argument("--epochs", type=int, default=12,
                   help="refine epochs (32 windows each) per round; no time budget")
    p.add_argument("--base-epochs", type=int, default=4,
                   help="base model training epochs (4: a weak model from another scene)")
    p.add_argument("--round-budget", type=float, default=120.0,
                   help="refine budget of the timed 2048² round (s; the product default)")
    p.add_argument("--part", choices=("all", "accuracy", "round", "scratch-random"),
                   default="all",
                   help="round: time one round on the 2048² scene only; scratch-random: "
                        "scratch on the final labels of random review with the first seed "
                        "(its windows do not depend on the models, so no rounds are run)")
    p.add_argument("--scratch", action=argparse.BooleanOptionalAction, default=True,
                   help="also train from scratch on a model-driven strategy's final labels")
    p.add_argument("--strategies", default="strata,random",
                   help="comma-separated: guided, plain, mixed, strata, random")
    p.add_argument("--seeds", default="0,1,2", help="seeds of the random strategy")
    p.add_argument("--model-seeds", default="0,1",
                   help="refine seeds of the model-driven strategies (guided, plain, mixed, "
                        "strata)")
    p.add_argument("--scene", choices=("loveda", "isprs"), default="loveda",
                   help="isprs: the base model trained on ISPRS Potsdam (RGB) is taken to "
                        "Vaihingen (IR-R-G), the whole 512² crops (--target-tile/-window "
                        "are LoveDA's)")
    p.add_argument("--target-tile", type=int, default=1,
                   help="the LoveDA tile the model is taken to")
    p.add_argument("--target-window", default="0,0,1024,1024",
                   help="x,y,w,h in the target tile (stops 31-36: 0,512,512,512)")
    p.add_argument("--fixed-pseudo", action="store_true",
                   help="the recipe before pseudo-labels followed what the parent gets "
                        "right (3 per corrected pixel at margin 0.5, whatever it gets right)")
    p.add_argument("--threads", type=int, default=2,
                   help="torch threads (1 on a busy machine: no thread waits on a descheduled one)")
    p.add_argument("--lr", type=float, help="refine's learning rate (default: refine's, the "
                                             "recipe's rate)")
    p.add_argument("--start", choices=STARTS, default="auto",
                   help="refine's --start (parent: never train afresh, as before stop 34, "
                        "which also drew uniform rather than class-balanced windows)")
    p.add_argument("--name", default="loop",
                   help="results file (bench/results/NAME.json) and work folder of the runs")
    a = p.parse_args()
    if not LOVEDA.is_dir():
        sys.exit(f"skipped: {LOVEDA} is absent (the real data of ../shared/data)")
    import torch
    torch.set_num_threads(a.threads)
    WORK.mkdir(parents=True, exist_ok=True)
    classes = ISPRS_CLASSES if a.scene == "isprs" else CLASSES
    if a.scene == "isprs":
        source_png, source_ann = (ISPRS / ISPRS_SOURCE.format(d) for d in ("img_dir", "ann_dir"))
        window = (0, 0, 512, 512)
        target_png, target_ann = (ISPRS / ISPRS_TARGET.format(d) for d in ("img_dir", "ann_dir"))
        stem = "isprs"
    else:
        source_png, source_ann = LOVEDA / "img_dir" / "0.png", LOVEDA / "ann_dir" / "0.png"
        window = tuple(int(v) for v in a.target_window.split(","))
        target_png, target_ann = (LOVEDA / d / f"{a.target_tile}.png" for d in ("img_dir", "ann_dir"))
        stem = "base"
    source = geotiff(source_png, WORK / f"source-{a.scene}.tif")
    source_labels = geotiff(source_ann, WORK / f"source-{a.scene}-labels.tif")
    base = WORK / f"{stem}-{a.base_epochs}ep.rsmodel"
    started = time.perf_counter()
    if not base.exists():
        train(images=[str(source)], labels=[str(source_labels)], out=str(base), classes=classes,
              ignore_value=0, hparams=HPARAMS, tile=256, epochs=a.base_epochs,
              patience=a.base_epochs, batch_size=4, samples_per_epoch=32, device="cpu")
    result = {"settings": vars(a), "base_train_s": round(time.perf_counter() - started, 1)}
    if a.part == "round":
        result["round_2048"] = time_round(base, a.k, a.cell, a.round_budget)
        print("round", result["round_2048"], flush=True)
        return save("loop-round", result)
    x, y, w, h = window
    # one file per scene, so runs on different scenes can go side by side
    target = geotiff(target_png, WORK / f"target-{a.scene}-{target_png.stem}-{x}-{y}-{w}-{h}.tif",
                     window)
    labels = np.asarray(Image.open(target_ann))[y:y + h, x:x + w]
    with rasterio.open(target) as ds:
        transform = ds.transform
    if a.part == "scratch-random":
        seed = int(a.seeds.split(",")[0])
        grid = [(gx, gy) for gy in range(0, h - a.cell + 1, a.cell)
                for gx in range(0, w - a.cell + 1, a.cell)]
        rng, chosen = np.random.default_rng(seed), []
        for _ in range(a.rounds):  # the draws run_strategy makes, round by round
            chosen += pick("random", Path(), Path(), Path(), transform, grid, chosen, a.k,
                           a.cell, rng)
        result[f"scratch-random-{seed}"] = scratch(target, labels, transform, chosen, a.cell,
                                                   a.epochs * a.rounds, WORK / a.name, classes)
        return save(a.name, result)
    runs = []
    for strategy in a.strategies.split(","):
        seeds = a.seeds if strategy == "random" else a.model_seeds
        for seed in (int(v) for v in seeds.split(",")):
            name = f"{strategy}-{seed}"
            result[name] = run_strategy(name, strategy, base, target, labels, transform,
                                        a.rounds, a.k, a.cell, a.epochs, seed, WORK / a.name,
                                        not a.fixed_pseudo, a.lr, a.start)
            runs.append(name)
            save(a.name, result)  # a partial result survives an interrupted run
    driven = [f"{s}-{a.model_seeds.split(',')[0]}" for s in a.strategies.split(",")
              if s != "random"]
    if driven and a.scratch:  # scratch on the first model-driven strategy's final labels
        result["scratch"] = {"labels_of": driven[0], **scratch(
            target, labels, transform, result[driven[0]]["windows"], a.cell,
            a.epochs * a.rounds, WORK / a.name, classes)}
        print("scratch", result["scratch"], flush=True)
    for strategy in a.strategies.split(","):
        result[f"{strategy}_mean"] = summary(result, strategy, a.rounds)
    for name in runs:
        result[name].pop("windows")
    if a.part == "all":
        result["round_2048"] = time_round(base, a.k, a.cell, a.round_budget)
        print("round", result["round_2048"], flush=True)
    save(a.name, result)


def summary(result: dict, strategy: str, rounds: int) -> List[dict]:
    """Per round: a strategy's runs' mean OA / mIoU and their spread (min..max)."""
    runs = [v["history"] for k, v in result.items() if k.startswith(f"{strategy}-")]
    summary = []
    for r in range(rounds + 1) if runs else ():
        oa = [h[r]["oa"] for h in runs]
        miou = [h[r]["miou"] for h in runs]
        summary.append({"round": r, "labelled_px": runs[0][r]["labelled_px"],
                        "oa_mean": round(float(np.mean(oa)), 4), "oa_min": min(oa),
                        "oa_max": max(oa), "miou_mean": round(float(np.mean(miou)), 4),
                        "miou_min": min(miou), "miou_max": max(miou)})
    return summary


if __name__ == "__main__":
    main()
