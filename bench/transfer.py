"""`make bench-transfer`: do models hold up on imagery they were not trained on? (not a test)

  change     a change model trained on the LEVIR-CD train/val pairs (0.5 m) is tested on the
             LEVIR test pairs resampled to 1.5 m with a different colour/brightness shift per
             date, with and without each transfer measure: resolution-aware inference
             (--gsd auto vs native), the normalisation mode (image vs dataset), sensor-shift
             augmentation and histogram matching; F1 next to CVA + Otsu on the same pairs
  finetune   the default base model fine-tuned (train --init) on 1 and 3 shifted test pairs vs
             training from scratch on them, scored on the other shifted pairs
  segment    a U-Net trained on the ISPRS Potsdam tile (5 cm) applied to the UAV orthophoto
             (2 cm) with --gsd auto vs native: class shares and PNGs for a visual check
  bands      the Potsdam U-Net (RGB, 5 cm) fine-tuned on 1, 2 and 4 labelled 128² crops of ISPRS
             Vaihingen (IR-R-G false colour, 9 cm) vs untouched and from scratch: mIoU, OA on the
             other Vaihingen cells (epoch-bounded: --epochs // 2, at least 10)
  cost       resampled inference vs native inference for the same ground area
  tta        test-time augmentation (none / flips / d4) of the default change model: F1 on the
             native and shifted LEVIR test pairs and seconds

Results go to bench/results/transfer-*.json (and PNGs beside them); record them in
docs/benchmarks.md with the machine.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from rasterio.enums import Resampling  # noqa: E402

from bench.run import machine  # noqa: E402
from engine.analysis.change import detect_change  # noqa: E402
from engine.inference.pipeline import predict  # noqa: E402
from engine.analysis.metrics import ConfusionMatrix, change_scores  # noqa: E402
from engine.formats.modelfile import read_card  # noqa: E402
from engine.training import train  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
LEVIR = DATA / "levir-cd" / "derived_geotiff"
WORK = ROOT / "build" / "bench-transfer"
RESULTS = ROOT / "bench" / "results"
ISPRS = DATA / "isprs-loveda"
ARCH, HPARAMS = "fcsiamdiff", {"base": 16, "depth": 4}
UNET = {"base": 16, "depth": 4}
# another sensor and season: each date gets its own gain per band, gamma and offset
SHIFTS = {"t1": ((0.80, 0.92, 1.12), 1.35, 12.0), "t2": ((1.30, 1.12, 0.86), 0.75, -8.0)}


def save(name: str, result: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "machine": machine(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              **result}
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1), flush=True)


def pairs(prefixes: Sequence[str]) -> List[str]:
    return sorted(p.stem for p in (LEVIR / "A").glob("*.tif") if p.stem.startswith(tuple(prefixes)))


def shifted(src: Path, out: Path, factor: float, shift: Optional[tuple],
            labels: bool = False) -> Path:
    """``src`` at ``factor``× coarser GSD (area average, bilinear for a factor below 1; labels:
    change where most is change) with a per-band gain, gamma and offset."""
    with rasterio.open(src) as ds:
        h, w = int(round(ds.height / factor)), int(round(ds.width / factor))
        data = ds.read(out_shape=(ds.count, h, w), out_dtype="float32",
                       resampling=Resampling.average if factor >= 1 else Resampling.bilinear)
        profile = ds.profile | {"width": w, "height": h,
                                "transform": ds.transform * ds.transform.scale(factor)}
    if labels:
        data = (data >= 127.5).astype(np.float32) * 255
    elif shift is not None:
        gains, gamma, offset = shift
        u = np.clip(data / 255.0, 0, 1) ** gamma
        data = u * 255.0 * np.asarray(gains, np.float32)[:, None, None] + offset
    profile.pop("blockxsize", None), profile.pop("blockysize", None)
    with rasterio.open(out, "w", **(profile | {"dtype": "uint8", "tiled": False})) as dst:
        dst.write(np.clip(np.rint(data), 0, 255).astype(np.uint8))
    return out


def shifted_set(names: Sequence[str], folder: Path) -> Dict[str, Dict[str, Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for n in names:
        out[n] = {"t1": shifted(LEVIR / "A" / f"{n}.tif", folder / f"{n}_A.tif", 3, SHIFTS["t1"]),
                  "t2": shifted(LEVIR / "B" / f"{n}.tif", folder / f"{n}_B.tif", 3, SHIFTS["t2"]),
                  "label": shifted(LEVIR / "label" / f"{n}.tif", folder / f"{n}_L.tif", 3, None,
                                   labels=True)}
    return out


def native_set(names: Sequence[str]) -> Dict[str, Dict[str, Path]]:
    return {n: {"t1": LEVIR / "A" / f"{n}.tif", "t2": LEVIR / "B" / f"{n}.tif",
                "label": LEVIR / "label" / f"{n}.tif"} for n in names}


def score(model, data: Dict[str, Dict[str, Path]], folder: Path, tag: str, device: str,
          **options) -> dict:
    """Change F1 pooled over the pairs of ``data``."""
    folder.mkdir(parents=True, exist_ok=True)
    cm = ConfusionMatrix(2)
    empty = 0
    for n, p in data.items():
        out = folder / f"{tag}-{n}.tif"
        r = detect_change(model, p["t1"], p["t2"], out, device=device, **options)
        empty += r["changed_fraction"] < 1e-3
        with rasterio.open(out) as o, rasterio.open(p["label"]) as t:
            cm.update((t.read(1) > 0).astype(np.int64), o.read(1).astype(np.int64))
    s = change_scores(cm.matrix)
    return {"f1": round(float(s["f1"] or 0.0), 4), "precision": round(float(s["precision"] or 0), 4),
            "recall": round(float(s["recall"] or 0), 4), "empty_maps": int(empty)}


def train_change(out: Path, data: Dict[str, Dict[str, Path]], epochs: int, samples: int,
                 device: str, **options) -> dict:
    started = time.perf_counter()
    opts = dict(task="change", arch=ARCH, hparams=dict(HPARAMS), tile=128, epochs=epochs,
                batch_size=8, samples_per_epoch=samples, val_fraction=0.2, device=device,
                workers=0, patience=epochs, seed=0)
    opts.update(options)
    r = train(images=[str(p["t1"]) for p in data.values()],
              images2=[str(p["t2"]) for p in data.values()],
              labels=[str(p["label"]) for p in data.values()], out=str(out), **opts)
    return {"train_seconds": round(time.perf_counter() - started, 1),
            "val_f1": round(float(r["best_metric"]), 4), "epochs_run": r["epochs_run"]}


TRAIN_VARIANTS = {
    # name: training options; "defaults" (last) is what `engine train --task change` does now
    "dataset, no sensor aug (old defaults)": dict(normalisation="dataset", sensor_augment=False,
                                                  color_jitter=0.2),
    "dataset + sensor aug with zoom": dict(normalisation="dataset", scale_augment_p=1.0),
    "image, no sensor aug": dict(normalisation="image", sensor_augment=False, color_jitter=0.2),
    "image + sensor aug with zoom (defaults before issue 27)": dict(scale_augment_p=1.0),
    "image + sensor aug with zoom, each p = 0.5": dict(scale_augment_p=0.5, sensor_augment_p=0.5),
    "image + sensor aug with zoom, each p = 0.3": dict(scale_augment_p=0.3, sensor_augment_p=0.3),
    "image + sensor aug with zoom, last 30 % in-domain": dict(scale_augment_p=1.0,
                                                              sensor_augment_share=0.7),
    "defaults (image + sensor aug, no zoom)": dict(),
}
DEFAULT_VARIANT = list(TRAIN_VARIANTS)[-1]
INFER_VARIANTS = {"native GSD": dict(gsd="native"), "gsd auto": dict(gsd="auto"),
                  "gsd auto + match histograms": dict(gsd="auto", match_histograms=True)}


def bench_change(device: str, epochs: int, samples: int) -> Path:
    folder = WORK / "change"
    train_set = native_set(pairs(("train", "val")))
    test_names = pairs(("test",))
    native_test, shifted_test = native_set(test_names), shifted_set(test_names, folder / "shifted")
    result: dict = {"train_pairs": list(train_set), "test_pairs": test_names,
                    "shift": {"gsd_factor": 3, **{k: list(map(str, v)) for k, v in SHIFTS.items()}},
                    "cva": {"native": score("cva", native_test, folder / "pred", "cva-n", device),
                            "shifted": score("cva", shifted_test, folder / "pred", "cva-s", device)},
                    "models": {}}
    default_model = None
    for i, (name, options) in enumerate(TRAIN_VARIANTS.items()):
        model = folder / f"model{i}.rsmodel"
        entry = train_change(model, train_set, epochs, samples, device, **options)
        entry["native"] = score(model, native_test, folder / "pred", f"m{i}-n", device)
        entry["shifted"] = {k: score(model, shifted_test, folder / "pred", f"m{i}-s{j}", device, **v)
                            for j, (k, v) in enumerate(INFER_VARIANTS.items())}
        result["models"][name] = entry
        default_model = model
        save("transfer-change", {"epochs": epochs, "samples_per_epoch": samples,
                                 "architecture": ARCH, "hparams": HPARAMS, **result})
    return default_model


def bench_finetune(device: str, base: Path, epochs: int, samples: int) -> None:
    folder = WORK / "finetune"
    test_names = pairs(("test",))
    data = shifted_set(test_names, WORK / "change" / "shifted")
    held_out = {n: data[n] for n in test_names[3:]}
    result: dict = {"base_model": str(base), "held_out": list(held_out),
                    "cva": score("cva", held_out, folder / "pred", "cva", device),
                    "base": score(base, held_out, folder / "pred", "base", device), "runs": {}}
    for k in (1, 3):
        few = {n: data[n] for n in test_names[:k]}
        # from scratch at the base model's GSD: both see the pairs at the same scale
        runs = {"fine-tuned, defaults (LR 0.3x, encoder frozen for the first third)": (
                    epochs, dict(init=str(base))),
                "fine-tuned, LR 1x, 30 epochs": (30, dict(init=str(base), lr=1e-3)),
                "from scratch": (epochs, dict(gsd=read_card(base)["gsd_m"]))}
        for name, (n_epochs, options) in runs.items():
            model = folder / f"{name.split()[0].strip(',')}-{k}-{len(result['runs'])}.rsmodel"
            entry = train_change(model, few, n_epochs, samples, device, val_fraction=0.0,
                                 **options)
            entry["held_out"] = score(model, held_out, folder / "pred", f"{name[:4]}-{k}", device)
            result["runs"][f"{k} pair(s): {name}"] = entry
        save("transfer-finetune", {"epochs": epochs, "samples_per_epoch": samples, **result})


def quicklook(classes: Path, out: Path) -> None:
    """A PNG of a class raster with its colour table (for the visual check)."""
    from PIL import Image
    with rasterio.open(classes) as ds:
        data, cmap = ds.read(1), ds.colormap(1)
    lut = np.zeros((256, 3), np.uint8)
    for v, rgba in cmap.items():
        lut[v] = rgba[:3]
    Image.fromarray(lut[data]).save(out)


def georeferenced(src: Path, out: Path, gsd: float, window: Optional[tuple] = None,
                  blank: Sequence[tuple] = ()) -> Path:
    """A PNG (or its ``window`` = col, row, width, height) as a GeoTIFF at ``gsd`` m: the ISPRS
    crops carry no georeferencing.  ``blank`` windows are set to 0 (held-out labels)."""
    from rasterio.transform import from_origin
    from rasterio.windows import Window
    col, row = window[:2] if window else (0, 0)
    with rasterio.open(src) as ds:
        data = ds.read(window=Window(*window) if window else None)
    for c, r, w, h in blank:
        data[:, r:r + h, c:c + w] = 0
    transform = from_origin(500000 + col * gsd, 5800000 - row * gsd, gsd, gsd)
    with rasterio.open(out, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=data.dtype, crs="EPSG:32633",
                       transform=transform) as dst:
        dst.write(data)
    return out


def potsdam_model(device: str, epochs: int, samples: int) -> Path:
    """The U-Net (base 16, depth 4) trained on the ISPRS Potsdam tile (RGB, 5 cm)."""
    folder = WORK / "segment"
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "potsdam-unet.rsmodel"
    if model.exists():
        return model
    paths = {key: georeferenced(next((ISPRS / "potsdam" / sub).glob("*.png")),
                                folder / f"potsdam_{key}.tif", 0.05)
             for key, sub in (("image", "img_dir"), ("labels", "ann_dir"))}
    train(images=[str(paths["image"])], labels=[str(paths["labels"])], out=str(model),
          ignore_value=0, tile=128, epochs=epochs, samples_per_epoch=samples, batch_size=8,
          device=device, hparams=dict(UNET), patience=epochs, workers=0)
    return model


def bench_segment(device: str, epochs: int, samples: int) -> None:
    folder = WORK / "segment"
    started = time.perf_counter()
    model = potsdam_model(device, epochs, samples)
    seconds = time.perf_counter() - started
    uav = DATA / "uav-ortho" / "dummy_fotomap_small.tif"
    result = {"model": {"train_seconds": round(seconds, 1), "trained_gsd_m": 0.05},
              "input": {"file": uav.name, "gsd_m": 0.02}, "runs": {}}
    for mode in ("native", "auto"):
        out = folder / f"uav-{mode}.tif"
        r = predict(model, uav, out, bands=[1, 2, 3], gsd=mode, device=device)
        quicklook(out, RESULTS / f"transfer-uav-{mode}.png")
        result["runs"][mode] = {"seconds": round(r["seconds"], 2), "gsd_scale": r["gsd_scale"],
                                "class_fractions": {k: round(v, 4) for k, v in
                                                    r["class_fractions"].items()},
                                "png": f"bench/results/transfer-uav-{mode}.png"}
    with rasterio.open(folder / "uav-native.tif") as a, rasterio.open(folder / "uav-auto.tif") as b:
        result["agreement_native_vs_auto"] = round(float((a.read(1) == b.read(1)).mean()), 4)
    save("transfer-segment", result)


# Vaihingen cells (col, row) of 128² labelled in this order (k crops = the first k): a user
# labels crops that show the classes; the tile's left half has no tree and 260 px of low
# vegetation, so a left/right split could not teach them.  The other 12 cells are scored.
VAIHINGEN_CROPS = ((384, 128), (128, 0), (384, 384), (0, 384))
CROP = 128


def recipe_lr(arch: str) -> float:
    """The learning rate `train` uses for ``arch`` when --lr is not given (1× of the tables)."""
    from engine.training.config import DEFAULTS, recipe_of
    return float(recipe_of(arch).get("lr", DEFAULTS["lr"]))


def bench_bands(device: str, base: Path, epochs: int, samples: int) -> None:
    """The Potsdam U-Net (RGB, 5 cm) fine-tuned on 1, 2 and 4 labelled 128² crops of ISPRS
    Vaihingen (IR-R-G, 9 cm: the bands mean something else) vs the untouched model and training
    from scratch; mIoU and OA on the Vaihingen cells no run was given."""
    from engine.analysis.evaluation import evaluate
    folder = WORK / "bands"
    folder.mkdir(parents=True, exist_ok=True)
    src = {key: next((ISPRS / "vaihingen" / sub).glob("*.png"))
           for key, sub in (("image", "img_dir"), ("labels", "ann_dir"))}
    gsd = 0.09
    cells = [(c, r, CROP, CROP) for c, r in VAIHINGEN_CROPS]
    held_img = georeferenced(src["image"], folder / "held_image.tif", gsd)
    held_lab = georeferenced(src["labels"], folder / "held_labels.tif", gsd, blank=cells)
    crops = [{key: georeferenced(src[key], folder / f"crop{i}_{key}.tif", gsd, cell)
              for key in src} for i, cell in enumerate(cells)]
    card = read_card(base)

    def held_out(model: Path, tag: str) -> dict:
        pred = folder / f"pred-{tag}.tif"
        predict(model, held_img, pred, gsd="auto", device=device)
        r = evaluate(pred, held_lab, folder / f"pred-{tag}.json", ignore_value=0)
        return {"miou": round(float(r["miou"] or 0), 4),
                "oa": round(float(r["overall_accuracy"] or 0), 4)}

    lr = recipe_lr("unet")
    result: dict = {"base_model": str(base), "crops": cells, "gsd_m": gsd, "epochs": epochs,
                    "samples_per_epoch": samples, "base": held_out(base, "base"), "runs": {}}
    variants = {"fine-tuned, defaults (LR 0.3x, encoder frozen for the first third)": {},
                "fine-tuned, LR 1x": dict(lr=lr),
                "fine-tuned, LR 0.1x": dict(lr=0.1 * lr),
                "fine-tuned, encoder never frozen": dict(freeze_encoder_epochs=0),
                "fine-tuned, encoder frozen throughout": dict(freeze_encoder_epochs=epochs),
                "fine-tuned, 2x epochs": dict(epochs=2 * epochs),
                "from scratch": dict(init=None, gsd=card["gsd_m"])}
    for k in (1, 2, 4):
        for j, (name, options) in enumerate(variants.items()):
            model = folder / f"run-{k}-{j}.rsmodel"
            opts = dict(init=str(base), epochs=epochs) | options
            started, cpu = time.perf_counter(), time.process_time()
            train(images=[str(c["image"]) for c in crops[:k]], out=str(model),
                  labels=[str(c["labels"]) for c in crops[:k]], ignore_value=0,
                  classes=card["classes"], tile=128, samples_per_epoch=samples, batch_size=8,
                  val_fraction=0.0, patience=opts["epochs"], device=device, workers=0,
                  arch="unet", hparams=dict(UNET), seed=0, **opts)
            entry = {"train_seconds": round(time.perf_counter() - started, 1),
                     "train_cpu_seconds": round(time.process_time() - cpu, 1),
                     "labelled_px": k * CROP * CROP, **held_out(model, f"{k}-{j}")}
            result["runs"][f"{k} crop(s): {name}"] = entry
            save("transfer-bands", result)


def bench_tta(device: str, base: Path) -> None:
    """F1 and seconds of the default change model with each test-time augmentation."""
    folder = WORK / "tta"
    test_names = pairs(("test",))
    sets = {"native": native_set(test_names),
            "shifted": shifted_set(test_names, WORK / "change" / "shifted")}
    result: dict = {"model": str(base), "test_pairs": test_names, "runs": {}}
    for mode in ("none", "flips", "d4"):
        entry = {}
        for name, data in sets.items():
            started = time.perf_counter()
            entry[name] = score(base, data, folder / "pred", f"{mode}-{name}", device, tta=mode)
            entry[name]["seconds"] = round(time.perf_counter() - started, 2)
        result["runs"][mode] = entry
    save("transfer-tta", result)


def bench_cost(device: str, size: int = 2048) -> None:
    """Resampled vs native inference over the same ground area: a 0.5 m model on a 0.5 m scene
    (native) and on the same scene at 1.0 m (read at 0.5 m: the same network windows)."""
    from engine.formats.create import init_model
    from engine.sample import make_sample
    folder = WORK / "cost"
    folder.mkdir(parents=True, exist_ok=True)
    scene = make_sample(folder / "scene", size=size, seed=0)
    coarse = shifted(Path(scene["t1"]), folder / "t1_1m.tif", 2, None)
    fine = shifted(Path(scene["t1"]), folder / "t1_025m.tif", 0.5, None)
    model = init_model("unet", 4, 6, folder / "m.rsmodel", tile_size=512, overlap=64, gsd_m=0.5)
    times = {}
    for name, path in (("native 0.5 m scene", scene["t1"]), ("resampled 1.0 m scene", coarse),
                       ("resampled 0.25 m scene", fine)):
        predict(model, path, folder / "warm.tif", device=device)  # warm-up
        best = min(predict(model, path, folder / "out.tif", device=device)["seconds"]
                   for _ in range(2))
        times[name] = round(best, 2)
    # the same ground area and network windows; the 0.25 m scene reads and writes 4× the pixels
    ratios = {name: round(t / times["native 0.5 m scene"], 3) for name, t in times.items()
              if name.startswith("resampled")}
    save("transfer-cost", {"device": device, "scene_px": size, "seconds": times, "ratio": ratios,
                           "target": "<= 1.2"})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", choices=("change", "finetune", "segment", "bands", "cost", "tta"),
                   action="append")
    p.add_argument("--device", default="auto")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--samples", type=int, default=64, help="training windows per epoch")
    p.add_argument("--cost-size", type=int, default=2048, help="scene edge of the cost run (px)")
    p.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="fit the base model's training into this time (a reduced run)")
    a = p.parse_args()
    if not DATA.exists():
        sys.exit(f"real data not found at {DATA}; this benchmark needs ../shared/data")
    device = a.device if a.device != "auto" else ("cuda" if __import__("torch").cuda.is_available()
                                                  else "cpu")
    only = a.only or ["cost", "change", "finetune", "segment", "bands", "tta"]
    base = WORK / "change" / f"model{len(TRAIN_VARIANTS) - 1}.rsmodel"
    if "cost" in only:
        bench_cost(device, a.cost_size)
    if "change" in only:
        base = bench_change(device, a.epochs, a.samples)
    if ("finetune" in only or "tta" in only) and not base.exists():
        base.parent.mkdir(parents=True, exist_ok=True)  # the change benchmark's default model
        train_change(base, native_set(pairs(("train", "val"))), a.epochs, a.samples, device,
                     time_budget_s=a.time_budget, **TRAIN_VARIANTS[DEFAULT_VARIANT])
    if "finetune" in only:
        bench_finetune(device, base, max(10, a.epochs // 2), a.samples)
    if "segment" in only:
        bench_segment(device, a.epochs, a.samples)
    if "bands" in only:
        bench_bands(device, potsdam_model(device, a.epochs, a.samples), max(10, a.epochs // 2),
                    a.samples)
    if "tta" in only:
        bench_tta(device, base)


if __name__ == "__main__":
    main()
