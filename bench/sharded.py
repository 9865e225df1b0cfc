"""`bench/sharded.py`: `predict` under torchrun (2 CPU ranks) vs one process (a benchmark).

The U-Net of the inference benchmark (base 16, depth 4; random weights) segments the sample
scene at each size once in one process and once as a 2-rank gloo job (`torchrun --standalone
--nproc_per_node 2 -m engine predict`), every process with one intra-op thread, tile 512,
overlap 64, batch 8.  Records wall times, the speed-up, each process's peak RSS (VmHWM, which
must stay flat in raster area) and whether the two outputs are identical pixel for pixel, in
bench/results/sharded-cpu.json.

Usage: python bench/sharded.py [--sizes 2048,8192] [--ranks 2] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import rasterio  # noqa: E402

from bench.run import SCENES, model, peak_rss_mb, save, scene  # noqa: E402


def rank_entry(args: list) -> None:
    """One process of a run: the engine CLI, then its peak RSS into $RS_SEG_RSS_DIR."""
    from engine.__main__ import main
    code = main(args)
    folder = Path(os.environ["RS_SEG_RSS_DIR"])
    (folder / f"rank{os.environ.get('RANK', 0)}.json").write_text(
        json.dumps({"peak_rss_mb": round(peak_rss_mb(), 1)}))
    sys.exit(code)


def run(ranks: int, args: list, rss_dir: Path) -> dict:
    """Wall time and per-process peak RSS of one run (``ranks`` 1: a plain process)."""
    rss_dir.mkdir(parents=True, exist_ok=True)
    for f in rss_dir.glob("*.json"):
        f.unlink()
    entry = [str(Path(__file__).resolve()), "--rank-entry", *map(str, args)]
    cmd = ([sys.executable, *entry] if ranks == 1 else
           [str(Path(sys.executable).with_name("torchrun")), "--standalone",
            f"--nproc_per_node={ranks}", *entry])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RS_SEG_RSS_DIR": str(rss_dir),
           "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - t0
    rss = [json.loads((rss_dir / f"rank{r}.json").read_text())["peak_rss_mb"]
           for r in range(ranks)]
    return {"seconds": round(seconds, 2), "peak_rss_mb": rss}


def main() -> None:
    if "--rank-entry" in sys.argv:
        rank_entry(sys.argv[sys.argv.index("--rank-entry") + 1:])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="2048,8192")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cuda: each rank takes cuda:LOCAL_RANK")
    a = p.parse_args()
    out = SCENES / "sharded"
    out.mkdir(parents=True, exist_ok=True)
    net = model(SCENES / "unet-b16.rsmodel", 16, 4)
    results = {}
    for size in (int(s) for s in a.sizes.split(",")):
        src = scene(size)
        common = ["predict", "--model", net, "--input", src, "--device", a.device, "--tile", 512,
                  "--overlap", 64, "--batch-size", 8, "--gsd", "native"]
        one = run(1, common + ["--output", out / f"one-{size}.tif"], out / "rss")
        many = run(a.ranks, common + ["--output", out / f"many-{size}.tif"], out / "rss")
        with rasterio.open(out / f"one-{size}.tif") as x, \
                rasterio.open(out / f"many-{size}.tif") as y:
            identical = bool(all(np.array_equal(x.read(1, window=w), y.read(1, window=w))
                                 for _, w in x.block_windows(1)))
        results[f"{size}x{size}"] = {"one_process": one, f"{a.ranks}_ranks": many,
                                     "speed_up": round(one["seconds"] / many["seconds"], 2),
                                     "identical": identical}
        print(size, results[f"{size}x{size}"], flush=True)
    save(f"sharded-{a.device}", {"model": "unet base16 depth4 (4 bands, 6 classes)", "tile": 512,
                         "overlap": 64, "batch": 8, "threads_per_process": 1,
                         "ranks": a.ranks, "backend": "gloo", "results": results})


if __name__ == "__main__":
    main()
