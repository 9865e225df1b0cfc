"""`make bench-realdata`: accuracy on the real data in ../shared/data (a benchmark, not a test).

  segmentation  U-Net vs the classical minimum-distance floor, trained and tested on disjoint
                real pixels: LoveDA (train on the left halves of tiles 0-2, test on the right
                halves) and ISPRS Potsdam/Vaihingen crops (left half -> right half)
  change        SGSLN vs FC-Siam-diff vs change vector analysis + Otsu on LEVIR-CD (train on the
                `train_*` pairs, test on the `test_*` pairs; change-class F1 and IoU)

Each deep model gets the same number of epochs and windows per epoch.  Results go to
bench/results/realdata-*.json; record them in docs/benchmarks.md with the machine.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import rasterio  # noqa: E402

from bench.run import machine  # noqa: E402
from engine.analysis.change import detect_change  # noqa: E402
from engine.analysis.evaluation import evaluate  # noqa: E402
from engine.inference.pipeline import predict  # noqa: E402
from engine.analysis.metrics import ConfusionMatrix, change_scores  # noqa: E402
from engine.training import train  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
WORK = ROOT / "build" / "bench-realdata"
RESULTS = ROOT / "bench" / "results"


def save(name: str, result: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "machine": machine(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              **result}
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1), flush=True)


def half(src: Path, out: Path, side: str) -> Path:
    """Left or right half of a raster (gdal_translate -srcwin)."""
    with rasterio.open(src) as ds:
        w, h = ds.width, ds.height
    x0 = 0 if side == "left" else w // 2
    subprocess.run(["gdal_translate", "-q", "-srcwin", str(x0), "0", str(w // 2), str(h),
                    str(src), str(out)], check=True)
    return out


def segmentation_case(name: str, train_pairs, test_pairs, ignore: int, epochs: int, tile: int,
                      device: str) -> dict:
    folder = WORK / name
    folder.mkdir(parents=True, exist_ok=True)
    rows = {}
    for arch, hparams in (("unet", {"base": 16, "depth": 4}), ("mindist", {})):
        started = time.perf_counter()
        model = folder / f"{arch}.rsmodel"
        train(arch=arch, images=[str(i) for i, _ in train_pairs],
              labels=[str(l) for _, l in train_pairs], ignore_value=ignore, out=str(model),
              tile=tile, epochs=epochs, batch_size=8, samples_per_epoch=96, val_fraction=0.15,
              device=device, hparams=hparams, workers=1, patience=max(5, epochs // 3))
        seconds = time.perf_counter() - started
        matrix = None
        for k, (img, lab) in enumerate(test_pairs):
            pred = folder / f"{arch}-test{k}.tif"
            predict(model, img, pred, device=device, tile=tile, overlap=tile // 8)
            r = evaluate(pred, lab, folder / f"{arch}-test{k}.json", ignore_value=ignore)
            m = np.asarray(r["confusion_matrix"])
            names = [c["name"] for c in r["classes"]]
            matrix = m if matrix is None else matrix + m
        from engine.analysis.metrics import scores
        s = scores(matrix, names)
        rows[arch] = {"train_seconds": round(seconds, 1), "miou": s["miou"], "mf1": s["mf1"],
                      "overall_accuracy": s["overall_accuracy"], "kappa": s["kappa"],
                      "iou": {c["name"]: c["iou"] for c in s["per_class"]}}
    return rows


def bench_segmentation(device: str, epochs: int) -> None:
    isprs = DATA / "isprs-loveda"
    # LoveDA: every tile's left half trains, every right half is scored (tile 2 alone, the old
    # test split, is 87 % forest, a class tiles 0 and 1 hardly hold: docs/benchmarks.md, issue 27)
    folder = WORK / "loveda"
    folder.mkdir(parents=True, exist_ok=True)
    sides = {side: [tuple(half(isprs / "loveda" / d / f"{i}.png", folder / f"{d[:3]}{i}_{side}.tif", side)
                          for d in ("img_dir", "ann_dir")) for i in range(3)]
             for side in ("left", "right")}
    result = {"loveda": segmentation_case("loveda", sides["left"], sides["right"], 0, epochs, 256,
                                          device)}
    for site, stem in (("potsdam", "2_10_0_0_512_512"), ("vaihingen", "area1_0_0_512_512")):
        folder = WORK / site
        folder.mkdir(parents=True, exist_ok=True)
        img, lab = (isprs / site / d / f"{stem}.png" for d in ("img_dir", "ann_dir"))
        train_pair = (half(img, folder / "img_left.tif", "left"), half(lab, folder / "lab_left.tif", "left"))
        test_pair = (half(img, folder / "img_right.tif", "right"), half(lab, folder / "lab_right.tif", "right"))
        result[site] = segmentation_case(site, [train_pair], [test_pair], 0, epochs, 128, device)
    save("realdata-segmentation", {"epochs": epochs, "device": device, "results": result})


def bench_change(device: str, epochs: int, jitter: float = 0.2) -> None:
    levir = DATA / "levir-cd" / "derived_geotiff"
    names = sorted(p.stem for p in (levir / "A").glob("*.tif"))
    train_names = [n for n in names if n.startswith(("train", "val"))]
    test_names = [n for n in names if n.startswith("test")]
    folder = WORK / "levir"
    folder.mkdir(parents=True, exist_ok=True)
    result = {}
    methods = [("sgsln", {}), ("fcsiamdiff", {"base": 16, "depth": 4}), ("cva", None)]
    for arch, hparams in methods:
        started = time.perf_counter()
        model = "cva"
        if hparams is not None:
            model = folder / f"{arch}.rsmodel"
            train(task="change", arch=arch, images=[str(levir / "A" / f"{n}.tif") for n in train_names],
                  images2=[str(levir / "B" / f"{n}.tif") for n in train_names],
                  labels=[str(levir / "label" / f"{n}.tif") for n in train_names], out=str(model),
                  tile=128, epochs=epochs, batch_size=8, samples_per_epoch=64, val_fraction=0.2,
                  device=device, hparams=hparams, workers=1, lr=1e-3, warmup_steps=20,
                  schedule="poly", patience=epochs, color_jitter=jitter)
        seconds = time.perf_counter() - started
        cm = ConfusionMatrix(2)
        infer = 0.0
        for n in test_names:
            out = folder / f"{arch}-{n}.tif"
            r = detect_change(model, levir / "A" / f"{n}.tif", levir / "B" / f"{n}.tif", out,
                              device=device)
            infer += r["seconds"]
            with rasterio.open(out) as p, rasterio.open(levir / "label" / f"{n}.tif") as t:
                cm.update((t.read(1) > 0).astype(np.int64), p.read(1).astype(np.int64))
        s = change_scores(cm.matrix)
        result[arch] = {"train_seconds": round(seconds, 1),
                        "inference_s_per_256_pair": round(infer / len(test_names), 3),
                        **{k: s[k] for k in ("precision", "recall", "f1", "iou", "overall_accuracy")}}
    save("realdata-change", {"epochs": epochs, "device": device, "color_jitter": jitter,
                             "train_pairs": train_names,
                             "test_pairs": test_names, "results": result})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", choices=("segmentation", "change"), action="append")
    p.add_argument("--device", default="auto")
    p.add_argument("--epochs", type=int, default=30)
    a = p.parse_args()
    if not DATA.exists():
        sys.exit(f"real data not found at {DATA}; this benchmark needs ../shared/data")
    device = a.device if a.device != "auto" else ("cuda" if __import__("torch").cuda.is_available()
                                                  else "cpu")
    for what in a.only or ["segmentation", "change"]:
        {"segmentation": bench_segmentation, "change": bench_change}[what](device, a.epochs)


if __name__ == "__main__":
    main()
