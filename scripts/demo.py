"""`make demo`: the main jobs on generated sample scenes, everything under build/demo/.

1. two sample scenes (seed 0 to train on, seed 1 held out to test on)
2. train a small U-Net on scene 0 (labels raster) and the classical minimum-distance floor
3. segment the held-out scene, evaluate both models against its labels (JSON + HTML report)
4. polygons of the classes
5. change between the held-out scene's two dates (change vector analysis) with from-to classes
   from the trained model, evaluated against the known changes
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.__main__ import main as engine  # noqa: E402


def run(*argv: str) -> None:
    print(f"\n$ python -m engine {' '.join(argv)}", flush=True)
    if engine(list(argv)) != 0:
        sys.exit(f"demo step failed: python -m engine {' '.join(argv)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="build/demo")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=10)
    a = p.parse_args()
    out = Path(a.out)
    train_scene, test_scene = out / "scene-train", out / "scene-test"
    out.mkdir(parents=True, exist_ok=True)
    run("sample", "--out", str(train_scene), "--size", str(a.size), "--seed", "0")
    run("sample", "--out", str(test_scene), "--size", str(a.size), "--seed", "1")
    unet, floor = out / "unet.rsmodel", out / "mindist.rsmodel"
    run("train", "--arch", "unet", "--image", str(train_scene / "t1.tif"),
        "--labels", str(train_scene / "labels.tif"), "--out", str(unet), "--epochs", str(a.epochs),
        "--tile", "128", "--batch-size", "8", "--samples-per-epoch", "128", "--lr", "3e-3",
        "--hparams", json.dumps({"base": 8, "depth": 3}))
    run("train", "--arch", "mindist", "--image", str(train_scene / "t1.tif"),
        "--labels", str(train_scene / "labels.tif"), "--out", str(floor), "--tile", "128")
    run("info", str(unet))
    for name, model in (("unet", unet), ("mindist", floor)):
        run("predict", "--model", str(model), "--input", str(test_scene / "t1.tif"),
            "--output", str(out / f"{name}-classes.tif"), "--tile", "256", "--overlap", "32")
        run("evaluate", "--prediction", str(out / f"{name}-classes.tif"),
            "--reference", str(test_scene / "labels.tif"),
            "--report", str(out / f"{name}-accuracy.json"), "--html", str(out / f"{name}-accuracy.html"))
    run("vectorize", "--input", str(out / "unet-classes.tif"), "--output", str(out / "unet-classes.gpkg"),
        "--min-area", "2")
    run("change", "--model", "cva", "--t1", str(test_scene / "t1.tif"), "--t2", str(test_scene / "t2.tif"),
        "--output", str(out / "change.tif"), "--probabilities", str(out / "change-probability.tif"),
        "--polygons", str(out / "change.gpkg"), "--segmentation-model", str(unet),
        "--from-to", str(out / "from-to.tif"))
    run("evaluate", "--prediction", str(out / "change.tif"), "--reference", str(test_scene / "change.tif"),
        "--report", str(out / "change-accuracy.json"))
    print("\nDemo outputs in", out.resolve())
    for f in sorted(out.glob("*")):
        if f.is_file():
            print(f"  {f.name:32s} {f.stat().st_size / 1e6:8.2f} MB")
    for name in ("unet", "mindist"):
        r = json.loads((out / f"{name}-accuracy.json").read_text())
        print(f"held-out accuracy {name:8s} OA {r['overall_accuracy']:.3f}  mIoU {r['miou']:.3f}")


if __name__ == "__main__":
    main()
