"""`make bench-zoo`: the model zoo on real data at equal training-time budgets (a benchmark, not a
test).  CPU-sized configurations (documented per row); on a GPU, raise the budget and use the full
configurations.

  isprs   U-Net vs SRCBTFusion-Net vs GLCNet vs VSGNet (edges structure map, random frozen ViT):
          Potsdam crop, train on the left half, test on the right half
  cafe    Swiss RGB + LiDAR DSM + LiDAR classes on the shore's land strip, a checkerboard of
          20-m cells (train on one colour, test on the other): CaFE with the DSM, with an
          nDSM (DSM minus a local minimum), with a blank DSM (RGB alone), without
          category-wise enhancement, and U-Net — per-class IoU, several seeds
  glcnet  self-supervised pre-training on all unlabelled RGB imagery in ../shared/data (one
          run, fixed epochs), then fine-tuning on three labelled Swiss tree tiles vs random
          initialisation, same budget; each of the four labelled tiles held out in turn
          (or, --labelled-tiles 1, each one alone fine-tuned on), several seeds
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

from bench.realdata import DATA, RESULTS, half, save  # noqa: E402
from engine.analysis.derive import derive, derive_dsm  # noqa: E402
from engine.analysis.evaluation import evaluate  # noqa: E402
from engine.inference.pipeline import predict  # noqa: E402
from engine.training import train  # noqa: E402

WORK = ROOT / "build" / "bench-zoo"
CONFIGS = {
    "unet": {"base": 16, "depth": 4},
    "srcbtfusion": {"stage_units": [1, 2, 2], "width": 32, "vit_depth": 2, "vit_hidden": 192,
                    "vit_heads": 4, "vit_mlp": 384, "dec_width": 128, "grid": 8},
    "glcnet": {"depth": 18, "width": 32, "aspp_channels": 64, "low_level_channels": 24,
               "decoder_channels": 64},
    "vsgnet": {"widths": [32, 64, 128, 256], "depths": [1, 1, 2, 1], "mlp_ratios": [2, 2, 2, 2],
               "decoder_dim": 64, "vit": "vits14_reg", "drop_path": 0.0},
    "cafe": {"depth": 18, "width": 32, "decoder_blocks": [1, 1, 1, 1], "final_blocks": 1},
}


def _score(pred: Path, ref: Path, folder: Path, ignore: int | None) -> dict:
    r = evaluate(pred, ref, folder / (pred.stem + ".json"), ignore_value=ignore)
    return {"miou": r["miou"], "overall_accuracy": r["overall_accuracy"],
            "iou": {c["name"]: c["iou"] for c in r["per_class"]}}


def _fit(folder: Path, arch: str, budget: float, tile: int, images, labels, aux=None,
         hparams=None, ignore=None, seed=0, init=None, name=None, loss=None,
         **options) -> tuple[Path, dict]:
    model = folder / f"{name or arch}.rsmodel"
    started = time.perf_counter()
    result = train(arch=arch, images=[str(p) for p in images], labels=[str(p) for p in labels],
                   aux=[str(p) for p in aux] if aux else [], out=str(model), tile=tile,
                   epochs=1000, batch_size=4, samples_per_epoch=16, val_fraction=0.2,
                   time_budget_s=budget, patience=1000, hparams=dict(hparams or CONFIGS[arch]),
                   ignore_value=ignore, seed=seed, init=str(init) if init else None,
                   device="cpu", loss=loss, **options)
    return model, {"train_seconds": round(time.perf_counter() - started, 1),
                   "epochs": result["epochs_run"], "val_metric": result["best_metric"]}


def bench_isprs(budget: float) -> None:
    folder = WORK / "isprs"
    folder.mkdir(parents=True, exist_ok=True)
    site = DATA / "isprs-loveda" / "potsdam"
    stem = "2_10_0_0_512_512"
    img_l = half(site / "img_dir" / f"{stem}.png", folder / "img_left.tif", "left")
    lab_l = half(site / "ann_dir" / f"{stem}.png", folder / "lab_left.tif", "left")
    img_r = half(site / "img_dir" / f"{stem}.png", folder / "img_right.tif", "right")
    lab_r = half(site / "ann_dir" / f"{stem}.png", folder / "lab_right.tif", "right")
    for img in (img_l, img_r):
        derive("edges", img, img.with_name(img.stem + "_edges.tif"))
    rows = {}
    for arch in ("unet", "srcbtfusion", "glcnet", "vsgnet"):
        aux = [img_l.with_name("img_left_edges.tif")] if arch == "vsgnet" else None
        model, info = _fit(folder, arch, budget, 128, [img_l], [lab_l], aux=aux, ignore=0)
        pred = folder / f"{arch}-pred.tif"
        predict(model, img_r, pred, device="cpu", tile=128, overlap=16,
                aux=img_r.with_name("img_right_edges.tif") if arch == "vsgnet" else None)
        rows[arch] = {"config": CONFIGS[arch], **info, **_score(pred, lab_r, folder, 0)}
    save("zoo-isprs", {"budget_s": budget, "train": "Potsdam 2_10 left half",
                       "test": "right half", "results": rows})


def _lidar_labels(folder: Path) -> Path:
    """LiDAR classes → 1 ground, 2 low vegetation, 3 tree, 4 building, 5 other; 0 ignored."""
    src = DATA / "swiss-ortho" / "lidar" / "derived_lidar_class_0.5m.tif"
    out = folder / "lidar_labels.tif"
    lut = np.zeros(256, np.uint8)
    for codes, value in (((2,), 1), ((3,), 2), ((4, 5), 3), ((6,), 4), ((10, 17), 5)):
        lut[list(codes)] = value
    with rasterio.open(src) as ds:
        profile = ds.profile | {"nodata": 0}
        data = lut[ds.read(1)]
    names = {1: "ground", 2: "low vegetation", 3: "tree", 4: "building", 5: "other"}
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data[None])
        dst.update_tags(1, **{f"CLASS_{k}": v for k, v in names.items()})
    return out


LAND = (0, 140, 480, 260)  # x, y, width, height: the shore strip; the rest is lake
CELL = 40  # checkerboard cell edge in pixels (20 m)


def _crop(src: Path, out: Path) -> Path:
    subprocess.run(["gdal_translate", "-q", "-srcwin", *map(str, LAND), str(src), str(out)],
                   check=True)
    return out


def _checkerboard(labels: Path, out: Path, parity: int) -> Path:
    """Keep the labels of the cells whose (row + column) parity matches; the rest become 0."""
    with rasterio.open(labels) as ds:
        profile, tags, data = ds.profile, ds.tags(1), ds.read(1)
    rows, cols = np.indices(data.shape) // CELL
    data[(rows + cols) % 2 != parity] = 0
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data[None])
        dst.update_tags(1, **tags)
    return out


def _blank_dsm(dsm: Path, out: Path) -> Path:
    """Same grid and nodata as the DSM, zero elsewhere: CaFE with no elevation signal."""
    with rasterio.open(dsm) as ds:
        profile, nodata, data = ds.profile, ds.nodata, ds.read(1)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(np.where(data == nodata, nodata, 0).astype("float32")[None])
    return out


# CaFE's recipe (SGD 7e-4) assumes ImageNet-initialised streams; from scratch on a CPU budget every
# run here trains with the U-Net's defaults so that only the network and its loss differ.
SAME_OPTIMISER = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "schedule": "poly",
                  "grad_clip": 1.0}


CAFE_RUNS = ("cafe_rgb_dsm", "cafe_rgb_ndsm", "cafe_rgb_only", "cafe_no_enhancement", "unet")


def bench_cafe(budget: float, seeds: int, variants=CAFE_RUNS) -> None:
    """The CaFE comparison; ``variants`` picks runs, merged into an earlier result of the same
    budget, seeds and split."""
    folder = WORK / "cafe"
    folder.mkdir(parents=True, exist_ok=True)
    lidar = DATA / "swiss-ortho" / "lidar"
    img = _crop(lidar / "ref-img.tif", folder / "img.tif")
    dsm = _crop(lidar / "derived_dsm_0.5m.tif", folder / "dsm.tif")
    labels = _crop(_lidar_labels(folder), folder / "labels.tif")
    lab_train = _checkerboard(labels, folder / "labels_train.tif", 0)
    lab_test = _checkerboard(labels, folder / "labels_test.tif", 1)
    blank = _blank_dsm(dsm, folder / "dsm_blank.tif")
    ndsm = folder / "ndsm.tif"
    derive_dsm(img, ndsm, dsm, ndsm=True)  # height above a 65-px (32 m) local minimum
    runs = {"cafe_rgb_dsm": ("cafe", dsm, {}, "cafe"),
            "cafe_rgb_ndsm": ("cafe", ndsm, {}, "cafe"),
            "cafe_rgb_only": ("cafe", blank, {}, "cafe"),
            "cafe_no_enhancement": ("cafe", dsm, {"cel_mode": "none"}, "cafe"),
            "unet": ("unet", None, {}, None)}
    runs = {name: runs[name] for name in variants}
    rows = {name: [] for name in runs}
    for seed in range(seeds):
        for name, (arch, aux, extra, loss) in runs.items():
            model, info = _fit(folder, arch, budget, 96, [img], [lab_train],
                               aux=[aux] if aux else None, hparams={**CONFIGS[arch], **extra},
                               name=f"{name}-{seed}", loss=loss, seed=seed, **SAME_OPTIMISER)
            pred = folder / f"{name}-{seed}-pred.tif"
            predict(model, img, pred, device="cpu", tile=96, overlap=16, aux=aux)
            rows[name].append({"seed": seed, **info, **_score(pred, lab_test, folder, 0)})
    summary = {}
    for name, runs_ in rows.items():
        classes = runs_[0]["iou"]
        summary[name] = {"config": {**CONFIGS[runs[name][0]], **runs[name][2]},
                         "miou_mean": float(np.mean([r["miou"] for r in runs_])),
                         "miou_std": float(np.std([r["miou"] for r in runs_])),
                         "iou_mean": {c: float(np.mean([r["iou"][c] for r in runs_]))
                                      for c in classes}}
    result = {"budget_s": budget, "seeds": seeds, "optimiser": SAME_OPTIMISER,
              "data": f"swiss-ortho/lidar RGB + LiDAR DSM, LiDAR classes; land window "
                      f"x,y,w,h={LAND}; checkerboard of {CELL}-px cells: even cells train, odd "
                      f"cells test", "summary": summary, "runs": rows}
    earlier = RESULTS / "zoo-cafe.json"
    if earlier.exists():
        old = json.loads(earlier.read_text())
        if all(old.get(k) == result[k] for k in ("budget_s", "seeds", "optimiser", "data")):
            result["summary"] = {**old["summary"], **summary}
            result["runs"] = {**old["runs"], **rows}
    save("zoo-cafe", result)


def _labelled_swiss(folder: Path) -> list:
    """The four labelled Swiss tiles as (image, label) with the image's georeferencing."""
    pairs = []
    for n in ("00", "05", "11", "19"):
        img = DATA / "swiss-ortho" / "img" / f"1091-322_{n}.tif"
        lab = folder / f"trees_{n}.tif"
        with rasterio.open(img) as ds, rasterio.open(DATA / "swiss-ortho" / "response_img" /
                                                     f"1091-322_{n}.tif") as r:
            profile = {"driver": "GTiff", "width": ds.width, "height": ds.height, "count": 1,
                       "dtype": "uint8", "crs": ds.crs, "transform": ds.transform}
            data = r.read(1) + 1  # 1 = other, 2 = tree
        with rasterio.open(lab, "w", **profile) as dst:
            dst.write(data[None].astype("uint8"))
            dst.update_tags(1, CLASS_1="other", CLASS_2="tree")
        pairs.append((img, lab))
    return pairs


PRE_WINDOWS = 64  # pre-training windows per epoch


def _pretrained(folder: Path, unlabelled: list, epochs: int) -> tuple[Path, float]:
    """GLCNet pre-trained for ``epochs`` in one run (one cosine schedule); a kept model with the
    same epoch count is reused."""
    from engine.formats.modelfile import read_card
    from engine.training.pretrain import pretrain
    pre = folder / f"glcnet-pre-{epochs}.rsmodel"
    if pre.exists() and read_card(pre)["training"].get("epochs") == epochs:
        history = read_card(pre)["training"]["history"]
        return pre, sum(PRE_WINDOWS / e["samples_per_s"] for e in history)
    started = time.perf_counter()
    pretrain([str(p) for p in unlabelled], "glcnet", str(pre), epochs=epochs, batch_size=8,
             crop=96, patch_size=16, device="cpu", samples_per_epoch=PRE_WINDOWS,
             hparams=CONFIGS["glcnet"])
    return pre, time.perf_counter() - started


def bench_glcnet(pre_epochs: int, ft_budget: float, seeds: int, labelled: int) -> None:
    folder = WORK / "glcnet"
    folder.mkdir(parents=True, exist_ok=True)
    unlabelled = [DATA / "swiss-ortho" / "big_img" / "1091-322_00.tif",
                  DATA / "swiss-ortho" / "lidar" / "ref-img.tif",
                  DATA / "uav-ortho" / "dummy_fotomap_small.tif",
                  DATA / "rotterdam-ms" / "rgb_unmasked.tif",
                  *sorted((DATA / "isprs-loveda" / "loveda" / "img_dir").glob("*.png")),
                  DATA / "isprs-loveda" / "potsdam" / "img_dir" / "2_10_0_0_512_512.png"]
    pre, pre_seconds = _pretrained(folder, unlabelled, pre_epochs)
    pairs = _labelled_swiss(folder)
    rows = {"pretrained": [], "random": []}
    for fold in range(len(pairs)):
        # three tiles: leave tile `fold` out; one tile: fine-tune on tile `fold` alone
        if labelled == 1:
            train_pairs, test_pairs = [pairs[fold]], pairs[:fold] + pairs[fold + 1:]
        else:
            train_pairs, test_pairs = pairs[:fold] + pairs[fold + 1:], [pairs[fold]]
        for seed in range(seeds):
            for kind in rows:
                name = f"ft{labelled}-{kind}-f{fold}-s{seed}"
                model, info = _fit(folder, "glcnet", ft_budget, 64, [p[0] for p in train_pairs],
                                   [p[1] for p in train_pairs], seed=seed, name=name,
                                   init=pre if kind == "pretrained" else None)
                scores = []
                for test_img, test_lab in test_pairs:
                    pred = folder / f"{name}-{test_img.stem}-pred.tif"
                    predict(model, test_img, pred, device="cpu", tile=64, overlap=16)
                    scores.append(_score(pred, test_lab, folder, None))
                rows[kind].append({"train_tiles": [p[0].stem for p in train_pairs],
                                   "test_tiles": [p[0].stem for p in test_pairs], "seed": seed,
                                   **info, "miou": float(np.mean([r["miou"] for r in scores])),
                                   "tree_iou": float(np.mean([r["iou"]["tree"] for r in scores])),
                                   "per_test_tile": scores})
    summary = {k: {"miou_mean": float(np.mean([r["miou"] for r in v])),
                   "miou_std": float(np.std([r["miou"] for r in v])),
                   "tree_iou_mean": float(np.mean([r["tree_iou"] for r in v]))}
               for k, v in rows.items()}
    wins = sum(a["miou"] > b["miou"] for a, b in zip(rows["pretrained"], rows["random"]))
    protocol = ("fine-tune on one labelled Swiss tile, test on the other three (mean mIoU), each "
                "tile in turn" if labelled == 1 else
                "leave one of the four labelled Swiss tiles out; fine-tune on the other three")
    save("zoo-glcnet" if labelled == 3 else f"zoo-glcnet-{labelled}tile",
         {"pretrain_seconds": round(pre_seconds, 1), "pretrain_epochs": pre_epochs,
          "unlabelled": [str(p.relative_to(DATA)) for p in unlabelled],
          "fine_tune_budget_s": ft_budget, "config": CONFIGS["glcnet"], "protocol": protocol,
          "seeds": seeds, "summary": summary,
          "pretrained_wins": f"{wins} of {len(rows['random'])}", "runs": rows})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", choices=("isprs", "cafe", "glcnet"), action="append")
    p.add_argument("--budget", type=float, default=150, help="training seconds per model")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--pretrain-epochs", type=int, default=500, help="GLCNet pre-training epochs "
                   "(64 windows each)")
    p.add_argument("--cafe-runs", nargs="+", choices=CAFE_RUNS, default=list(CAFE_RUNS),
                   help="CaFE comparison: which runs (merged into an earlier zoo-cafe.json of the "
                        "same budget, seeds and split)")
    p.add_argument("--labelled-tiles", type=int, choices=(1, 3), default=3,
                   help="GLCNet fine-tuning: on three labelled tiles (leave one out) or on one")
    a = p.parse_args()
    if not DATA.exists():
        sys.exit(f"real data not found at {DATA}; this benchmark needs ../shared/data")
    todo = a.only or ["isprs", "cafe", "glcnet"]
    if "isprs" in todo:
        bench_isprs(a.budget)
    if "cafe" in todo:
        bench_cafe(a.budget, a.seeds, a.cafe_runs)
    if "glcnet" in todo:
        bench_glcnet(a.pretrain_epochs, a.budget / 2, a.seeds, a.labelled_tiles)


if __name__ == "__main__":
    main()
