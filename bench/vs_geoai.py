"""`python bench/vs_geoai.py --size N`: RS Seg's `predict` side by side with GeoAI's
`predict_geotiff` (a benchmark, not a test).

Same U-Net (base 16, depth 4; 4 bands, 6 classes, random weights), same sample scene, tile
512, overlap 64, batch 8, CPU, one run each, every run in a fresh process (time and peak RSS =
VmHWM).  RS Seg runs with `--backend torch`, `--backend auto` (onnxruntime fp32) and
`--precision int8` (the model quantised first, calibrated on the scene).

GeoAI (`geoai-py` 0.40.1 on PyPI) is not installed: it pulls 281 packages, among them torch 2.14.1
with the CUDA 13 libraries, numpy 2.4, rasterio 1.4 and shapely 2.2 — another torch than the
one measured here, and no way to compare like with like.  :func:`geoai_predict` reproduces its
documented `geoai.inference.predict_geotiff` (as of 0.40) step by step instead: the tile grid
with window starts pulled back at the right and bottom edges and duplicates dropped, zero-padded
edge tiles, the spline blending window (raised half-cosine ramp over the overlap, power 2),
float64 accumulators of the class scores and of the weights over the whole raster, batches
through the network under `torch.no_grad`, division by the weights, then (its `postprocess_fn`)
the arg-max written as one LZW-compressed band.  Its `preprocess_fn` is given the card's
normalisation, so both sides feed the network the same values.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

RUNS = ("geoai", "torch", "onnx", "int8")


def spline_window(tile: int, overlap: int, power: int = 2) -> np.ndarray:
    """GeoAI's spline blending weights (tile × tile): 1 inside, a raised half-cosine to the
    power ``power`` over the ``overlap`` pixels of each edge."""
    line = np.ones(tile, np.float64)
    if overlap > 0:
        ramp = np.linspace(0.0, 1.0, overlap + 1)[1:]
        ramp = (0.5 * (1.0 - np.cos(np.pi * ramp))) ** power
        line[:overlap], line[-overlap:] = ramp, ramp[::-1]
    return np.outer(line, line).astype(np.float32)


def geoai_tiles(width: int, height: int, tile: int, overlap: int) -> List[Tuple[int, ...]]:
    """GeoAI's tile grid: a stride of tile − overlap, edge tiles pulled back inside the raster,
    duplicates dropped, as (row0, col0, row1, col1)."""
    stride = tile - overlap
    tiles = []
    for row in range(0, height, stride):
        for col in range(0, width, stride):
            r1, c1 = min(row + tile, height), min(col + tile, width)
            tiles.append((max(0, r1 - tile), max(0, c1 - tile), r1, c1))
    return list(dict.fromkeys(tiles))


def geoai_predict(model: Any, src_path: Path, out_path: Path, classes: int,
                  preprocess: Callable[[np.ndarray], np.ndarray], tile: int = 512,
                  overlap: int = 64, batch: int = 8) -> None:
    """GeoAI's `predict_geotiff` algorithm with an arg-max post-processing (see the module)."""
    import rasterio
    import torch
    from rasterio.windows import Window
    weights = spline_window(tile, overlap)
    with rasterio.open(src_path) as src:
        h, w, bands = src.height, src.width, list(range(1, src.count + 1))
        profile = src.profile.copy()
        scores = np.zeros((classes, h, w), np.float64)
        total = np.zeros((1, h, w), np.float64)
        tiles = geoai_tiles(w, h, tile, overlap)
        for start in range(0, len(tiles), batch):
            chunk = tiles[start:start + batch]
            images = []
            for r0, c0, r1, c1 in chunk:
                data = src.read(bands, window=Window(c0, r0, c1 - c0, r1 - r0)).astype(np.float32)
                if data.shape[1:] != (tile, tile):
                    padded = np.zeros((len(bands), tile, tile), np.float32)
                    padded[:, :data.shape[1], :data.shape[2]] = data
                    data = padded
                images.append(preprocess(data))
            with torch.no_grad():
                preds = model(torch.from_numpy(np.stack(images))).cpu().numpy()
            for (r0, c0, r1, c1), pred in zip(chunk, preds):
                wt = weights[:r1 - r0, :c1 - c0]
                scores[:, r0:r1, c0:c1] += pred[:, :r1 - r0, :c1 - c0] * wt
                total[:, r0:r1, c0:c1] += wt
    blended = np.where(total > 0, scores / (total + 1e-8), -9999.0).astype(np.float32)
    classes_map = blended.argmax(0).astype(np.uint8)
    profile.update(count=1, dtype="uint8", nodata=255, compress="lzw")
    with rasterio.open(out_path, "w", **profile) as dst:
        dst.write(classes_map, 1)


def _peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(run: str, scene: Path, model: Path, out: Path) -> Dict[str, Any]:
    """One run in this (fresh) process: seconds and peak RSS."""
    t0 = time.perf_counter()
    if run == "geoai":
        import torch

        from engine.formats.modelfile import load_model
        lm = load_model(model, "cpu")
        spec = lm.card["inputs"]["image"]
        mean = np.asarray(spec["mean"], np.float32)[:, None, None]
        std = np.asarray(spec["std"], np.float32)[:, None, None]
        net = lm.network.eval()
        geoai_predict(lambda x: net(image=x), scene, out, len(lm.card["classes"]),
                      lambda a: (a - mean) / std)
        backend = "torch (GeoAI algorithm)"
    else:
        from engine.inference.pipeline import predict
        result = predict(model, scene, out, device="cpu", tile=512, overlap=64, batch_size=8,
                         gsd="native", backend="torch" if run == "torch" else "auto",
                         precision="int8" if run == "int8" else "fp32")
        backend = result["backend"]
    return {"run": run, "backend": backend, "seconds": round(time.perf_counter() - t0, 2),
            "peak_rss_mb": round(_peak_mb(), 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2048, help="scene edge (default 2048)")
    p.add_argument("--runs", default=",".join(RUNS), help=f"subset of {','.join(RUNS)}")
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        run, scene, model, out = a.child
        print(json.dumps(child(run, Path(scene), Path(model), Path(out))))
        return
    from bench.run import SCENES, model, save, scene
    src = scene(a.size)
    path = model(SCENES / "unet-b16.rsmodel", 16, 4)
    runs = [r for r in a.runs.split(",") if r]
    if "int8" in runs:
        from engine.formats.onnx.quantize import export_int8
        record = export_int8(path, src, windows=16)
        print(f"  int8: agreement {record['agreement']:.4f} with fp32", flush=True)
    results, outputs = [], {}
    for run in runs:
        out = SCENES / f"vs-geoai-{run}-{a.size}.tif"
        proc = subprocess.run([sys.executable, __file__, "--child", run, str(src), str(path),
                               str(out)], capture_output=True, text=True, check=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        outputs[run] = out
        print(f"  {run:6s} {results[-1]}", flush=True)
    base = next((r for r in results if r["run"] == "geoai"), None)
    if base:
        for r in results:
            r["time_vs_geoai"] = round(r["seconds"] / base["seconds"], 3)
            r["memory_vs_geoai"] = round(r["peak_rss_mb"] / base["peak_rss_mb"], 3)
    import rasterio

    from engine.formats.modelfile import read_card
    values = np.array([c["value"] for c in read_card(path)["classes"]], np.uint8)
    agreement = {}
    if "torch" in outputs:
        with rasterio.open(outputs["torch"]) as ref:
            want = ref.read(1)
        for run, out in outputs.items():
            with rasterio.open(out) as ds:
                got = ds.read(1)
            if run == "geoai":  # GeoAI writes class indices, RS Seg the card's class values
                got = values[got]
            agreement[run] = round(float(np.mean(got == want)), 5)
    save(f"vs-geoai-{a.size}", {"model": "unet base16 depth4 (4 bands, 6 classes)",
                                "raster": f"{a.size}x{a.size}", "tile": 512, "overlap": 64,
                                "batch": 8, "runs": results,
                                "class_agreement_with_torch": agreement})


if __name__ == "__main__":
    main()
