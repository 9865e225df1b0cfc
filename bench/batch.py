"""`bench/batch.py`: many small rasters in one `predict_many` call vs one call per raster.

200 rasters of 128×128 px (4 bands, windows cut from the 1024² sample scene) are segmented by
a U-Net (base 16, depth 4; random weights; tile 128, overlap 16) on the CPU, three ways:

* one `engine.inference.batch.predict_many` call (the model loaded once, one progress bar);
* 200 separate `engine.predict(model_path, …)` calls in this process, each loading the model;
* separate `python -m engine predict` processes (each importing torch and loading the model):
  ``--processes`` of them (default 20) are timed and the total extrapolated to all rasters.

Outputs of the batch and the separate calls are compared byte for byte.  Results go to
bench/results/batch-cpu.json.

Usage: OMP_NUM_THREADS=2 python bench/batch.py [--count 200] [--processes 20] [--size 128]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from rasterio.windows import Window  # noqa: E402

from bench.run import peak_rss_mb, save, scene  # noqa: E402

WORK = ROOT / "build" / "bench" / "batch"


def small_rasters(count: int, size: int) -> list[Path]:
    """``count`` ``size``² crops of the sample scene at seeded random offsets."""
    folder = WORK / f"in{size}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"r{i:03d}.tif" for i in range(count)]
    if all(p.exists() for p in paths):
        return paths
    rng = np.random.default_rng(0)
    with rasterio.open(scene(1024)) as src:
        for p in paths:
            x, y = rng.integers(0, src.width - size, 2)
            window = Window(int(x), int(y), size, size)
            profile = dict(src.profile, width=size, height=size,
                           transform=src.window_transform(window), tiled=False)
            profile.pop("blockxsize", None), profile.pop("blockysize", None)
            with rasterio.open(p, "w", **profile) as dst:
                dst.write(src.read(window=window))
    return paths


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--processes", type=int, default=20)
    p.add_argument("--size", type=int, default=128)
    a = p.parse_args()
    import torch

    from engine.inference.batch import predict_many
    from engine.formats.create import init_model
    from engine.inference.pipeline import predict

    threads = int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))
    torch.set_num_threads(threads)
    inputs = small_rasters(a.count, a.size)
    model = WORK / "unet-b16d4-t128.rsmodel"
    if not model.exists():
        init_model("unet", 4, 6, model, hparams={"base": 16, "depth": 4}, tile_size=128,
                   overlap=16)
    out = {name: WORK / name for name in ("many", "calls", "processes")}
    for folder in out.values():
        folder.mkdir(parents=True, exist_ok=True)
        for f in folder.iterdir():
            f.unlink()

    started = time.perf_counter()
    result = predict_many(model, inputs, out["many"], device="cpu")
    many_s = time.perf_counter() - started
    assert len(result["written"]) == a.count and not result["failed"]

    started = time.perf_counter()
    for path in inputs:
        predict(model, path, out["calls"] / path.name, device="cpu")
    calls_s = time.perf_counter() - started

    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    started = time.perf_counter()
    for path in inputs[:a.processes]:
        subprocess.run([sys.executable, "-m", "engine", "predict", "--model", str(model),
                        "--input", str(path), "--output", str(out["processes"] / path.name),
                        "--device", "cpu"], check=True, cwd=ROOT, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    processes_s = time.perf_counter() - started
    identical = all((out["many"] / q.name).read_bytes() == (out["calls"] / q.name).read_bytes()
                    for q in inputs) and \
        all((out["many"] / q.name).read_bytes() == (out["processes"] / q.name).read_bytes()
            for q in inputs[:a.processes])
    per_process = processes_s / a.processes
    save("batch-cpu", {
        "rasters": a.count, "size_px": a.size, "model": "unet base 16 depth 4, tile 128",
        "threads": threads, "windows": result["windows"],
        "predict_many_s": round(many_s, 2),
        "predict_many_ms_per_raster": round(1000 * many_s / a.count, 1),
        "separate_predict_calls_s": round(calls_s, 2),
        "separate_predict_calls_ms_per_raster": round(1000 * calls_s / a.count, 1),
        "separate_processes_timed": a.processes,
        "separate_processes_s_per_raster": round(per_process, 2),
        "separate_processes_s_extrapolated": round(per_process * a.count, 1),
        "speedup_vs_calls": round(calls_s / many_s, 2),
        "speedup_vs_processes": round(per_process * a.count / many_s, 1),
        "outputs_identical": identical, "peak_rss_mb": round(peak_rss_mb(), 1)})


if __name__ == "__main__":
    main()
