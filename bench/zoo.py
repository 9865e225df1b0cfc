"""`make bench-zoo`: the model zoo on real data at equal training-time budgets (a benchmark, not a
test).  CPU-sized configurations (documented per row); on a GPU, raise the budget and use the full
configurations.

  isprs   U-Net vs SRCBTFusion-Net vs GLCNet vs VSGNet (edges structure map, random frozen ViT):
          Potsdam crop, train on the left half, test on the right half
  cafe    Swiss RGB + LiDAR DSM + LiDAR classes: CaFE with DSM, CaFE with a blank DSM (RGB
          alone), CaFE without category-wise enhancement, U-Net — per-class IoU
  glcnet  self-supervised pre-training on all unlabelled RGB imagery in ../shared/data, then
          fine-tuning on three labelled Swiss tree tiles vs random initialisation, same budget,
          several seeds; tested on the fourth labelled tile
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import rasterio  # noqa: E402

from bench.realdata import DATA, half, save  # noqa: E402
from engine.derive import derive  # noqa: E402
from engine.evaluation import evaluate  # noqa: E402
from engine.inference import predict  # noqa: E402
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
         hparams=None, ignore=None, seed=0, init=None, name=None, loss=None) -> tuple[Path, dict]:
    model = folder / f"{name or arch}.rsmodel"
    started = time.perf_counter()
    result = train(arch=arch, images=[str(p) for p in images], labels=[str(p) for p in labels],
                   aux=[str(p) for p in aux] if aux else [], out=str(model), tile=tile,
                   epochs=1000, batch_size=4, samples_per_epoch=16, val_fraction=0.2,
                   time_budget_s=budget, patience=1000, hparams=dict(hparams or CONFIGS[arch]),
                   ignore_value=ignore, seed=seed, init=str(init) if init else None,
                   device="cpu", loss=loss)
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


def _rows(src: Path, out: Path, y0: int, y1: int) -> Path:
    with rasterio.open(src) as ds:
        width = ds.width
    subprocess.run(["gdal_translate", "-q", "-srcwin", "0", str(y0), str(width), str(y1 - y0),
                    str(src), str(out)], check=True)
    return out


def bench_cafe(budget: float) -> None:
    folder = WORK / "cafe"
    folder.mkdir(parents=True, exist_ok=True)
    lidar = DATA / "swiss-ortho" / "lidar"
    labels = _lidar_labels(folder)
    with rasterio.open(lidar / "ref-img.tif") as ds:
        height = ds.height
    split = int(height * 0.55)
    parts = {}
    for name, src in (("img", lidar / "ref-img.tif"), ("dsm", lidar / "derived_dsm_0.5m.tif"),
                      ("lab", labels)):
        parts[name] = (_rows(src, folder / f"{name}_train.tif", 0, split),
                       _rows(src, folder / f"{name}_test.tif", split, height))
    blank = {}
    for k, dsm in enumerate(parts["dsm"]):
        with rasterio.open(dsm) as ds:
            profile = ds.profile | {"nodata": None}
            arr = np.where(ds.read(1) == ds.nodata, -9999, 0).astype("float32")
        blank[k] = folder / f"blank_{k}.tif"
        with rasterio.open(blank[k], "w", **(profile | {"nodata": -9999})) as dst:
            dst.write(arr[None])
    runs = {"cafe_rgb_dsm": ("cafe", parts["dsm"], {}, "cafe"),
            "cafe_rgb_only": ("cafe", (blank[0], blank[1]), {}, "cafe"),
            "cafe_no_enhancement": ("cafe", parts["dsm"], {"cel_mode": "none"}, "cafe"),
            "unet": ("unet", None, {}, None)}
    rows = {}
    for name, (arch, aux, extra, loss) in runs.items():
        model, info = _fit(folder, arch, budget, 96, [parts["img"][0]], [parts["lab"][0]],
                           aux=[aux[0]] if aux else None, hparams={**CONFIGS[arch], **extra},
                           name=name, loss=loss)
        pred = folder / f"{name}-pred.tif"
        predict(model, parts["img"][1], pred, device="cpu", tile=96, overlap=16,
                aux=aux[1] if aux else None)
        rows[name] = {"config": {**CONFIGS[arch], **extra}, **info,
                      **_score(pred, parts["lab"][1], folder, 0)}
    save("zoo-cafe", {"budget_s": budget, "data": "swiss-ortho/lidar RGB + LiDAR DSM, LiDAR "
                      "classes; top 55 % train, bottom 45 % test", "results": rows})


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


def bench_glcnet(pre_budget: float, ft_budget: float, seeds: int) -> None:
    from engine.pretrain import pretrain
    folder = WORK / "glcnet"
    folder.mkdir(parents=True, exist_ok=True)
    unlabelled = [DATA / "swiss-ortho" / "big_img" / "1091-322_00.tif",
                  DATA / "swiss-ortho" / "lidar" / "ref-img.tif",
                  DATA / "uav-ortho" / "dummy_fotomap_small.tif",
                  DATA / "rotterdam-ms" / "rgb_unmasked.tif",
                  *sorted((DATA / "isprs-loveda" / "loveda" / "img_dir").glob("*.png")),
                  DATA / "isprs-loveda" / "potsdam" / "img_dir" / "2_10_0_0_512_512.png"]
    pre = folder / "glcnet-pre.rsmodel"
    started = time.perf_counter()
    epochs = 0
    while not pre.exists() or (epochs and time.perf_counter() - started < pre_budget):
        epochs += 1
        pretrain([str(p) for p in unlabelled], "glcnet", str(pre), epochs=epochs, batch_size=8,
                 crop=96, patch_size=16, device="cpu", samples_per_epoch=64,
                 hparams=CONFIGS["glcnet"],
                 resume=str(pre) + ".last.ckpt" if epochs > 1 else None)
    pre_seconds = time.perf_counter() - started
    from engine.modelfile import read_card
    epochs = read_card(pre)["training"].get("epochs", epochs)  # a kept model from an earlier run
    pairs = _labelled_swiss(folder)
    train_pairs, (test_img, test_lab) = pairs[:3], pairs[3]
    rows = {"pretrained": [], "random": []}
    for seed in range(seeds):
        for kind in rows:
            name = f"ft-{kind}-{seed}"
            model, info = _fit(folder, "glcnet", ft_budget, 64, [p[0] for p in train_pairs],
                               [p[1] for p in train_pairs], seed=seed, name=name,
                               init=pre if kind == "pretrained" else None)
            pred = folder / f"{name}-pred.tif"
            predict(model, test_img, pred, device="cpu", tile=64, overlap=16)
            rows[kind].append({"seed": seed, **info, **_score(pred, test_lab, folder, None)})
    summary = {k: {"miou_mean": float(np.mean([r["miou"] for r in v])),
                   "miou_std": float(np.std([r["miou"] for r in v]))} for k, v in rows.items()}
    save("zoo-glcnet", {"pretrain_seconds": round(pre_seconds, 1), "pretrain_epochs": epochs,
                        "unlabelled": [str(p.relative_to(DATA)) for p in unlabelled],
                        "fine_tune_budget_s": ft_budget, "config": CONFIGS["glcnet"],
                        "train_tiles": ["00", "05", "11"], "test_tile": "19",
                        "summary": summary, "runs": rows})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", choices=("isprs", "cafe", "glcnet"), action="append")
    p.add_argument("--budget", type=float, default=150, help="training seconds per model")
    p.add_argument("--seeds", type=int, default=3)
    a = p.parse_args()
    if not DATA.exists():
        sys.exit(f"real data not found at {DATA}; this benchmark needs ../shared/data")
    todo = a.only or ["isprs", "cafe", "glcnet"]
    if "isprs" in todo:
        bench_isprs(a.budget)
    if "cafe" in todo:
        bench_cafe(a.budget)
    if "glcnet" in todo:
        bench_glcnet(2 * a.budget, a.budget / 2, a.seeds)


if __name__ == "__main__":
    main()
