"""`make gpu-check`: the CUDA tests and the GPU benchmarks in one command, inside a time budget.

On a machine with a CUDA GPU (and a CUDA build of torch) this runs, in order, each part only
while the budget (default 7.5 minutes) leaves room for it:

  tests    the tests that need CUDA (pytest -k "cuda or gpu"; they skip on a CPU box)
  models   U-Net (base 16, depth 4) on a 4096² scene and SGSLN (full) on a 2048² pair:
           model-only MPix/s in fp32 and with bf16 autocast (windows already on the GPU) vs
           end-to-end `predict` / `change` (bf16 autocast, reading and writing included)
  sweep    U-Net model-only MPix/s at batch 4, 8, 16, 32 (bf16)
  ranks    with several GPUs: `torchrun --nproc_per_node N -m engine predict` for 1 … N GPUs

and writes bench/results/gpu.json and the "GPU check" section of docs/benchmarks.md with the
device name.  `--write-doc RESULTS.json` only renders a saved results file into the document.
Without CUDA it refuses with a sentence (exit 2) before doing anything.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gpu_report import render, write_from_json, write_section  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "bench" / "results" / "gpu.json"
SCENES = ROOT / "build" / "bench"
# Rough seconds each part needs on a current data-centre GPU (scene generation included);
# a part starts only while the budget left exceeds its estimate.
ESTIMATE_S = {"tests": 150, "unet": 90, "sgsln": 90, "sweep": 45, "ranks": 90}


class NoCuda(Exception):
    """There is no CUDA device to check (the message says what to do); exit 2."""


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget-s", type=float, default=450.0,
                   help="seconds for the whole check (default 450: under 8 minutes)")
    p.add_argument("--size", type=int, default=4096, help="U-Net scene edge (default 4096)")
    p.add_argument("--change-size", type=int, default=2048,
                   help="SGSLN pair edge (default 2048)")
    p.add_argument("--batches", default="4,8,16,32", help="batch sweep (default 4,8,16,32)")
    p.add_argument("--skip", default="", help="comma-separated parts to leave out: "
                   + ",".join(ESTIMATE_S))
    p.add_argument("--doc", type=Path, default=DOC, help="document to write the figures into")
    p.add_argument("--results", type=Path, default=RESULTS, help="results JSON to write")
    p.add_argument("--write-doc", type=Path, metavar="RESULTS_JSON",
                   help="only render a saved results file into --doc (no GPU needed)")
    a = p.parse_args(argv)
    try:
        a.batches = [int(b) for b in a.batches.split(",") if b.strip()]
    except ValueError:
        p.error(f"--batches must be comma-separated numbers, e.g. 4,8,16 (got {a.batches!r})")
    if not a.batches or min(a.batches) < 1:
        p.error("--batches needs at least one batch size of 1 or more")
    a.skip = {s.strip() for s in a.skip.split(",") if s.strip()}
    unknown = a.skip - set(ESTIMATE_S)
    if unknown:
        p.error(f"--skip: unknown part(s) {', '.join(sorted(unknown))}; use "
                f"{', '.join(ESTIMATE_S)}")
    if a.budget_s <= 0 or a.size < 512 or a.change_size < 512:
        p.error("--budget-s must be positive and the sizes at least 512")
    return a


def require_cuda() -> Any:
    """torch, when it sees a CUDA device; else :class:`NoCuda` with what to do."""
    try:
        import torch
    except ImportError:
        raise NoCuda("gpu-check needs torch with CUDA; torch is not installed here "
                     "(make setup, then a CUDA build of torch==2.13.0)") from None
    if not torch.cuda.is_available():
        build = torch.version.cuda or "a CPU-only build"
        raise NoCuda(f"gpu-check needs a CUDA GPU, and torch {torch.__version__} ({build}) "
                     f"sees none here; run it on a machine with an NVIDIA GPU and driver and a "
                     f"CUDA build of torch==2.13.0 (nvidia-smi must list the GPU)")
    return torch


class Budget:
    """Seconds left of the check; parts that would not fit are recorded as skipped."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start, self.skipped = seconds, time.monotonic(), []

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    def allows(self, part: str, skip: set) -> bool:
        if part in skip:
            self.skipped.append(f"{part} (--skip)")
            return False
        if self.left() < ESTIMATE_S[part]:
            self.skipped.append(f"{part} (about {ESTIMATE_S[part]} s needed, "
                                f"{self.left():.0f} s of the budget left)")
            return False
        return True


def machine(torch: Any) -> Dict[str, Any]:
    """The device the figures belong to."""
    from bench.run import machine as cpu_machine
    info = cpu_machine()
    props = torch.cuda.get_device_properties(0)
    info.update(gpu=props.name, gpus=torch.cuda.device_count(), cuda=torch.version.cuda,
                gpu_memory_gb=round(props.total_memory / 2**30, 1))
    try:
        info["driver"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20).stdout.split("\n")[0].strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        info["driver"] = "?"
    return info


def run_tests(timeout: float) -> Dict[str, Any]:
    """The CUDA tests (those that skip without a GPU), with their summary line."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k",
               "cuda or gpu", "tests/engine"]
    try:
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
        out, code = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as exc:
        out, code = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) \
            else (exc.stdout or ""), "timeout"
    found = re.findall(r"^=*\s*(\d+ (?:passed|failed).*?)\s*=*$", out, re.M)
    return {"command": "pytest -k 'cuda or gpu' tests/engine", "exit_code": code,
            "summary": found[-1] if found else (out.strip().splitlines() or ["no output"])[-1]}


def _timed(torch: Any, call: Callable[[], Any], repeat: int = 2) -> float:
    """Best wall time of ``call`` after one warm-up, the GPU synchronised."""
    call()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def model_only(torch: Any, lm: Any, rasters: Dict[str, Path], tile: int, overlap: int,
               batch: int, bf16: bool) -> float:
    """Seconds of the network alone over every window of the rasters (already on the GPU)."""
    from engine.inference.pipeline import prepare_network, softmax_forward
    from engine.inference.tiling import Grid
    from engine.io.rasters import WindowReader, normalise, open_raster
    dev = torch.device("cuda")
    stacks: Dict[str, List[Any]] = {}
    for group, path in rasters.items():
        spec = lm.card["inputs"][group]
        with open_raster(path) as ds:
            grid = Grid(ds.width, ds.height, tile, overlap)
            reader = WindowReader(ds, list(range(1, len(spec["bands"]) + 1)))
            wins = [torch.from_numpy(normalise(w.pixels, w.valid, spec["mean"], spec["std"]))
                    for w in (reader.read(x, y, tile) for _, x, y in grid.windows())]
        stacks[group] = [torch.stack(wins[i:i + batch]).to(dev)
                         .contiguous(memory_format=torch.channels_last)
                         for i in range(0, len(wins), batch)]
    forward = softmax_forward(prepare_network(lm, dev))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16)

    def run() -> None:
        with torch.inference_mode(), autocast:
            for k in range(len(next(iter(stacks.values())))):
                forward({g: s[k] for g, s in stacks.items()}).argmax(1)
    seconds = _timed(torch, run)
    stacks.clear()
    torch.cuda.empty_cache()
    return seconds


def bench_model(torch: Any, name: str, size: int, batch: int) -> Dict[str, Any]:
    """Model-only (fp32, bf16) vs end-to-end MPix/s of U-Net (predict) or SGSLN (change)."""
    from bench.run import scene
    from engine.analysis.change import detect_change
    from engine.formats.create import init_model
    from engine.formats.modelfile import load_model
    from engine.inference.pipeline import predict
    tile, overlap = 512, 64
    t1 = scene(size)
    if name == "unet":
        path = SCENES / "unet-b16.rsmodel"
        if not path.exists():
            init_model("unet", 4, 6, path, hparams={"base": 16, "depth": 4})
        rasters = {"image": t1}
    else:
        path = SCENES / "sgsln-full.rsmodel"
        if not path.exists():
            init_model("sgsln", 4, 2, path)
        rasters = {"t1": t1, "t2": t1.parent / "t2.tif"}
    lm = load_model(path, torch.device("cuda"))
    fp32 = model_only(torch, lm, rasters, tile, overlap, batch, bf16=False)
    bf16 = model_only(torch, lm, rasters, tile, overlap, batch, bf16=True)
    out = SCENES / f"gpu-{name}.tif"
    if name == "unet":
        e2e = _timed(torch, lambda: predict(lm, t1, out, device="cuda", tile=tile,
                                            overlap=overlap, batch_size=batch, gsd="native"), 1)
    else:
        e2e = _timed(torch, lambda: detect_change(lm, t1, rasters["t2"], out, device="cuda",
                                                  tile=tile, overlap=overlap, batch_size=batch,
                                                  gsd="native"), 1)
    mpix = size * size / 1e6
    return {"model": {"unet": "U-Net base 16 depth 4", "sgsln": "SGSLN full"}[name],
            "raster": f"{size}²", "batch": batch, "model_only_fp32_mpix_s": mpix / fp32,
            "model_only_bf16_mpix_s": mpix / bf16, "end_to_end_mpix_s": mpix / e2e,
            "end_to_end_over_model_only": bf16 / e2e}


def batch_sweep(torch: Any, size: int, batches: Sequence[int]) -> List[Dict[str, Any]]:
    from bench.run import scene
    from engine.formats.modelfile import load_model
    lm = load_model(SCENES / "unet-b16.rsmodel", torch.device("cuda"))
    rows = []
    for b in batches:
        seconds = model_only(torch, lm, {"image": scene(size)}, 512, 64, b, bf16=True)
        rows.append({"batch": b, "mpix_s": size * size / 1e6 / seconds})
    return rows


def ranks(torch: Any, size: int, budget: Budget) -> List[Dict[str, Any]]:
    """End-to-end predict on 1 … N GPUs through torchrun (N = the GPUs present)."""
    from bench.run import scene
    src = scene(size)
    rows = []
    for n in sorted({1, torch.cuda.device_count()}):
        if budget.left() < ESTIMATE_S["ranks"] / 2:
            budget.skipped.append(f"torchrun with {n} GPUs (budget)")
            break
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={n}", "-m", "engine", "predict", "--model",
                   str(SCENES / "unet-b16.rsmodel"), "--input", str(src), "--output",
                   str(SCENES / f"gpu-ranks-{n}.tif"), "--device", "cuda", "--gsd", "native",
                   "--backend", "torch"]
        t0 = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True,
                       timeout=max(30.0, budget.left()))
        seconds = time.perf_counter() - t0
        rows.append({"gpus": n, "seconds": seconds, "mpix_s": size * size / 1e6 / seconds})
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    a = parse_args(argv)
    if a.write_doc is not None:
        write_from_json(a.write_doc, a.doc)
        print(f"wrote the GPU check section of {a.doc} from {a.write_doc}")
        return 0
    try:
        torch = require_cuda()
    except NoCuda as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    budget = Budget(a.budget_s)
    results: Dict[str, Any] = {"machine": machine(torch), "budget_s": a.budget_s,
                               "date": time.strftime("%Y-%m-%d %H:%M %Z")}
    if budget.allows("tests", a.skip):
        results["tests"] = run_tests(min(ESTIMATE_S["tests"] * 1.5, budget.left()))
    results["models"] = []
    for name, size in (("unet", a.size), ("sgsln", a.change_size)):
        if budget.allows(name, a.skip):
            results["models"].append(bench_model(torch, name, size, 8))
    if budget.allows("sweep", a.skip) and "unet" not in a.skip:
        results["batch_sweep"] = batch_sweep(torch, a.size, a.batches)
    if torch.cuda.device_count() > 1 and budget.allows("ranks", a.skip):
        results["ranks"] = ranks(torch, a.size, budget)
    results["skipped"] = budget.skipped
    results["seconds"] = a.budget_s - budget.left()
    a.results.parent.mkdir(parents=True, exist_ok=True)
    a.results.write_text(json.dumps(results, indent=1))
    write_section(a.doc, render(results))
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
