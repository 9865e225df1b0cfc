"""`bench/onnx_vs_torch.py`: `predict` through onnxruntime vs through torch (a benchmark).

(Not bench/onnx.py: run as a script, that name would shadow the onnx package.)

The U-Net baseline of `bench/run.py --only inference` (base 16, depth 4; 4 bands, 6 classes,
random weights), exported with `engine export`, segments the same sample scene both ways: same
tile 512, overlap 64, batch 8, CPU, same thread count.  Records both times, their ratio
(target: onnxruntime ≤ 0.8 × torch), the export's max |Δp| on a random batch and the share of
identical class pixels, in bench/results/onnx.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import rasterio  # noqa: E402

from bench.run import SCENES, model, save, scene  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=4096, help="scene edge (default 4096)")
    args = p.parse_args()
    from engine.inference.pipeline import predict
    from engine.formats.onnx.export import export_onnx

    src = scene(args.size)
    rsmodel = model(SCENES / "unet-b16.rsmodel", 16, 4)
    onnx_path = SCENES / "unet-b16.onnx"
    exported = export_onnx(rsmodel, onnx_path)
    out = SCENES / "onnx-bench"
    out.mkdir(exist_ok=True)
    seconds = {}
    for name, path in (("onnxruntime", onnx_path), ("torch", rsmodel)):
        t0 = time.perf_counter()
        result = predict(path, src, out / f"{name}.tif", device="cpu", tile=512, overlap=64,
                         batch_size=8, gsd="native")
        seconds[name] = time.perf_counter() - t0
        print(f"  {name:12s} {seconds[name]:7.2f} s  ({result['windows']} windows)", flush=True)
    with rasterio.open(out / "onnxruntime.tif") as a, rasterio.open(out / "torch.tif") as b:
        same = float(np.mean(a.read(1) == b.read(1)))
    import onnxruntime
    save("onnx", {
        "model": "unet base16 depth4 (4 bands, 6 classes)", "raster": f"{args.size}x{args.size}",
        "tile": 512, "overlap": 64, "batch": 8, "windows": result["windows"],
        "onnxruntime": onnxruntime.__version__, "opset": exported["opset"],
        "torch_s": round(seconds["torch"], 2), "onnxruntime_s": round(seconds["onnxruntime"], 2),
        "onnxruntime_over_torch": round(seconds["onnxruntime"] / seconds["torch"], 3),
        "export_max_abs_diff": exported["max_abs_diff"], "identical_class_pixels": same})


if __name__ == "__main__":
    main()
