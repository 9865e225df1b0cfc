"""`make bench-loop`: the analyst's loop (issue 26) simulated on real labelled scenes.

A U-Net trained on LoveDA tile 0 (agriculture, water, buildings; no forest) is taken to a
512² window of LoveDA tile 1 (rows/columns from 512/0: water 43 %, agriculture 26 %,
background 19 %, forest 10 %; `--target-window`).  Each round a simulated analyst "corrects" K windows of the target
with the true labels (the windows' label regions become correction polygons) and the model is
refined (`engine refine`, from the previous round's model) and re-predicted.  Strategies:

  guided   the K least-certain windows (`engine.analysis.unsure`, margin uncertainty)
  random   K random windows (seeded)
  scratch  a new U-Net trained from scratch on the guided strategy's final labels, with the
           time of all rounds together

Accuracy is overall accuracy and mIoU against every labelled pixel of the target.  A last part
times one round (refine with the default 2-minute budget + re-predict with uncertainty) on a
2048² scene (a 2×2 mosaic of LoveDA tiles).  Results: bench/results/loop.json; figures in
docs/benchmarks.md with the machine.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

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

WORK = ROOT / "build" / "bench-loop"
LOVEDA = DATA / "isprs-loveda" / "loveda"
NAMES = ["background", "building", "road", "water", "barren", "forest", "agriculture"]
CLASSES = [{"value": i + 1, "name": n, "color": c} for i, (n, c) in enumerate(zip(NAMES, [
    [255, 255, 255], [255, 0, 0], [255, 255, 0], [0, 0, 255], [159, 129, 183], [0, 255, 0],
    [255, 195, 128]]))]
CRS, RES = "EPSG:32650", 0.3
HPARAMS = {"base": 16, "depth": 4}


def geotiff(png: Path, out: Path, window: Tuple[int, int, int, int] = (0, 0, 1024, 1024),
            origin=(500000.0, 3400000.0)) -> Path:
    """A window (x, y, w, h) of a LoveDA PNG as a GeoTIFF on a made-up UTM grid (the tiles are
    not georeferenced)."""
    x, y, w, h = window
    a = np.asarray(Image.open(png))[y:y + h, x:x + w]
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    with rasterio.open(out, "w", driver="GTiff", width=a.shape[2], height=a.shape[1],
                       count=a.shape[0], dtype="uint8", crs=CRS, nodata=0 if a.shape[0] == 1 else None,
                       transform=from_origin(*origin, RES, RES)) as dst:
        dst.write(a)
    return out


def accuracy(prediction: Path, labels: np.ndarray) -> Dict[str, float]:
    with rasterio.open(prediction) as ds:
        pred = ds.read(1)
    mask = labels > 0
    lut = np.zeros(256, np.int64)
    lut[1:8] = np.arange(7)
    s = scores(confusion_matrix(lut[labels[mask]], lut[pred[mask]], 7))
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


def run_strategy(name: str, base: Path, image: Path, labels: np.ndarray, transform,
                 rounds: int, k: int, cell: int, budget: float, seed: int) -> dict:
    folder = WORK / name
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
        if name == "guided":
            taken = {(x, y) for x, y in chosen}
            places = unsure_places(unc, count=len(grid), cell_px=cell)
            picks = [(p.window[0], p.window[1]) for p in places
                     if p.window[2] == cell and p.window[3] == cell
                     and (p.window[0], p.window[1]) not in taken][:k]
        else:
            free = [g for g in grid if g not in chosen]
            picks = [free[i] for i in rng.choice(len(free), k, replace=False)]
        chosen += picks
        labelled += add_corrections(gpkg, labels, transform, picks, cell)
        started = time.perf_counter()
        out = folder / f"round{r}.rsmodel"
        result = refine(model, image, gpkg, out, prediction=pred, uncertainty=unc,
                        time_budget_s=budget, device="cpu", seed=seed + r)
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


def scratch(image: Path, labels: np.ndarray, transform, windows, cell: int, budget: float) -> dict:
    folder = WORK / "scratch"
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
          classes=CLASSES, ignore_value=0, hparams=HPARAMS, tile=256, epochs=1000, patience=8,
          time_budget_s=budget, batch_size=4, samples_per_epoch=32, device="cpu")
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


def time_2048(base: Path, k: int, cell: int, budget: float) -> dict:
    """One round on a 2048² scene: refine (default budget) + re-predict with uncertainty."""
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
    places = unsure_places(unc, count=k, cell_px=cell)
    add_corrections(gpkg, labels, transform, [(p.window[0], p.window[1]) for p in places], cell)
    started = time.perf_counter()
    refine(base, image, gpkg, folder / "r1.rsmodel", prediction=pred, uncertainty=unc,
           time_budget_s=budget, device="cpu")
    refine_s = time.perf_counter() - started
    repredict(folder / "r1.rsmodel", image, folder / "pred1.tif", previous=pred,
              uncertainty=folder / "unc1.tif", difference=folder / "diff1.tif", device="cpu")
    total = time.perf_counter() - started
    return {"size": 2048, "budget_s": budget, "refine_s": round(refine_s, 1),
            "repredict_s": round(total - refine_s, 1), "round_s": round(total, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--k", type=int, default=4, help="windows corrected per round")
    p.add_argument("--cell", type=int, default=64, help="window edge (px)")
    p.add_argument("--budget", type=float, default=30.0, help="refine budget per round (s)")
    p.add_argument("--base-budget", type=float, default=120.0, help="base model training (s)")
    p.add_argument("--round-budget", type=float, default=120.0,
                   help="refine budget of the timed 2048² round (s; the product default)")
    p.add_argument("--part", choices=("all", "accuracy", "round2048"), default="all")
    p.add_argument("--target-window", default="0,512,512,512", help="x,y,w,h in LoveDA tile 1")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if not LOVEDA.is_dir():
        sys.exit(f"skipped: {LOVEDA} is absent (the real data of ../shared/data)")
    import torch
    torch.set_num_threads(2)
    WORK.mkdir(parents=True, exist_ok=True)
    source = geotiff(LOVEDA / "img_dir" / "0.png", WORK / "source.tif")
    source_labels = geotiff(LOVEDA / "ann_dir" / "0.png", WORK / "source_labels.tif")
    x, y, w, h = (int(v) for v in a.target_window.split(","))
    target = geotiff(LOVEDA / "img_dir" / "1.png", WORK / "target.tif", (x, y, w, h))
    labels = np.asarray(Image.open(LOVEDA / "ann_dir" / "1.png"))[y:y + h, x:x + w]
    with rasterio.open(target) as ds:
        transform = ds.transform
    base = WORK / "base.rsmodel"
    started = time.perf_counter()
    if not base.exists():
        train(images=[str(source)], labels=[str(source_labels)], out=str(base), classes=CLASSES,
              ignore_value=0, hparams=HPARAMS, tile=256, epochs=1000, patience=10,
              time_budget_s=a.base_budget, batch_size=4, samples_per_epoch=32, device="cpu")
    result = {"settings": vars(a), "base_train_s": round(time.perf_counter() - started, 1)}
    if a.part == "round2048":
        result = {"settings": vars(a), "round_2048": time_2048(base, a.k, a.cell, a.round_budget)}
        return save("loop-round2048", result)
    for name in ("guided", "random"):
        result[name] = run_strategy(name, base, target, labels, transform, a.rounds, a.k, a.cell,
                                    a.budget, a.seed)
    result["scratch"] = scratch(target, labels, transform, result["guided"]["windows"], a.cell,
                                a.budget * a.rounds)
    print("scratch", result["scratch"], flush=True)
    for name in ("guided", "random"):
        result[name].pop("windows")
    if a.part == "all":
        result["round_2048"] = time_2048(base, a.k, a.cell, a.round_budget)
        print("2048", result["round_2048"], flush=True)
    save("loop", result)


if __name__ == "__main__":
    main()
