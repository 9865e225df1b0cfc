"""`make bench`: speed and memory of the engine's hot paths (a benchmark, not a test).

Writes one JSON file per benchmark into bench/results/ and prints a summary.  Run on the machine
whose figures you record in docs/benchmarks.md; every result carries a description of it.

  inference   end-to-end `predict` vs model-only (same windows, same batches, inputs already in
              memory) on a 4096² scene, U-Net baseline, tile 512, overlap 64, batch 8
  memory      peak RSS of `predict` at 2048² and 16384² (each in a fresh process)
  training    training samples/s vs model-only forward+backward on the same batches
  models      parameters, MACs at 512² and forward MPix/s of each documented architecture
  click       click-to-segment latency (cold click, nearby cached clicks), U-Net, window 512
  change      SGSLN seconds per 1024² pair; change-detection peak RSS at 2048² and 16384²
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import rasterio  # noqa: E402
import torch  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SCENES = ROOT / "build" / "bench"


SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_record(cpuinfo: str) -> dict:
    """The first processor's model name and its ``SPEED_FLAGS`` from /proc/cpuinfo's text: a
    virtual CPU's name can hide its generation, and these flags decide int8's speed."""
    record: dict = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and "cpu" not in record:
            record["cpu"] = value.strip()
        elif key.strip() == "flags" and "cpu_features" not in record:
            flags = set(value.split())
            record["cpu_features"] = [f for f in SPEED_FLAGS if f in flags]
    return record


def machine() -> dict:
    """What the figures were measured on."""
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            info.update(cpu_record(f.read()))
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (OSError, ValueError):
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def scene(size: int) -> Path:
    """The sample scene of edge ``size`` (generated once, kept in build/bench)."""
    from engine.sample import make_sample
    folder = SCENES / f"s{size}"
    if not (folder / "t1.tif").exists():
        print(f"  generating {size}² sample scene …", flush=True)
        make_sample(folder, size=size, seed=0)
    return folder / "t1.tif"


def model(path: Path, base: int, depth: int) -> Path:
    from engine.formats.create import init_model
    if not path.exists():
        init_model("unet", 4, 6, path, hparams={"base": base, "depth": depth})
    return path


def save(name: str, result: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "machine": machine(),
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **result}
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


def peak_rss_mb() -> float:
    """Peak resident memory of this process image in MB (VmHWM).  Not getrusage's ru_maxrss:
    Linux carries that across execve, so a child would report its parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_inference(device: str, size: int, batch: int) -> None:
    """End-to-end vs model-only on the same windows and batches."""
    from engine.inference.pipeline import predict, prepare_network, softmax_forward
    from engine.io.rasters import WindowReader, normalise, open_raster
    from engine.formats.modelfile import load_model
    from engine.inference.tiling import Grid

    src = scene(size)
    mpath = model(SCENES / "unet-b16.rsmodel", 16, 4)
    dev = torch.device("cuda" if device == "cuda" else "cpu")
    lm = load_model(mpath, dev)
    img = lm.card["inputs"]["image"]
    tile, overlap = 512, 64
    with open_raster(src) as ds:
        grid = Grid(ds.width, ds.height, tile, overlap)
        reader = WindowReader(ds, [1, 2, 3, 4])
        windows = []
        for _, x, y in grid.windows():
            w = reader.read(x, y, tile)
            windows.append(torch.from_numpy(normalise(w.pixels, w.valid, img["mean"], img["std"])))
    batches = [torch.stack(windows[i:i + batch]) for i in range(0, len(windows), batch)]
    if dev.type == "cuda":
        batches = [b.to(dev) for b in batches]
    forward = softmax_forward(prepare_network(lm, dev))
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda"
                else torch.autocast("cpu", enabled=False))

    def model_only() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode(), autocast:
            for b in batches:
                out = forward({"image": b.contiguous(memory_format=torch.channels_last)
                               if dev.type == "cuda" else b})
                if dev.type == "cuda":
                    out.argmax(1)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    model_only()  # warm-up (allocator, kernels)
    t_model = min(model_only() for _ in range(2 if dev.type == "cuda" else 1))
    batches.clear()  # free the in-memory windows before the end-to-end run
    windows.clear()
    out = SCENES / f"pred-{size}.tif"
    t_e2e = min(predict(lm, src, out, device=device, tile=tile, overlap=overlap,
                        batch_size=batch, backend="torch")["seconds"]
                for _ in range(2 if dev.type == "cuda" else 1))  # torch, as the model-only run
    mpix = size * size / 1e6
    save(f"inference-{dev.type}-{size}", {
        "model": "unet base16 depth4 (4 bands, 6 classes)", "raster": f"{size}x{size}",
        "tile": tile, "overlap": overlap, "batch": batch, "windows": len(grid),
        "model_only_s": round(t_model, 2), "end_to_end_s": round(t_e2e, 2),
        "model_only_mpix_s": round(mpix / t_model, 3), "end_to_end_mpix_s": round(mpix / t_e2e, 3),
        "end_to_end_over_model_only": round(t_e2e / t_model, 3)})


def _peak_rss_child(size: int, device: str) -> None:
    from engine.inference.pipeline import predict
    src = scene(size)
    m = model(SCENES / "unet-b4d2.rsmodel", 4, 2)
    r = predict(m, src, SCENES / f"mem-{size}.tif", device=device, tile=512, overlap=64,
                batch_size=8)
    print(json.dumps({"size": size, "peak_rss_mb": round(peak_rss_mb(), 1),
                      "seconds": round(r["seconds"], 1)}))


def bench_memory(device: str, sizes: list) -> None:
    """Peak RSS of predict at each size, each in a fresh interpreter."""
    for size in sizes:
        scene(size)
    model(SCENES / "unet-b4d2.rsmodel", 4, 2)
    rows = []
    for size in sizes:
        out = subprocess.run([sys.executable, __file__, "--peak-rss-child", str(size),
                              "--device", device], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base, big = rows[0]["peak_rss_mb"], rows[-1]["peak_rss_mb"]
    save(f"memory-{device}", {"model": "unet base4 depth2 (tiny: isolates the pipeline's memory)",
                              "tile": 512, "overlap": 64, "batch": 8, "runs": rows,
                              "ratio_largest_to_smallest": round(big / base, 3)})


def bench_training(device: str, size: int, batch: int, steps: int) -> None:
    """Training samples/s (data loading included) vs model-only forward+backward."""
    from engine.training import train
    from engine.training.losses import build_loss
    from engine.models import build

    src = scene(size)
    labels = src.parent / "labels.tif"
    tile = 256
    out = SCENES / "train-bench.rsmodel"
    result = train(images=[str(src)], labels=[str(labels)], out=str(out), tile=tile,
                   batch_size=batch, epochs=2, samples_per_epoch=batch * steps, device=device,
                   workers=1, hparams={"base": 16, "depth": 4}, val_fraction=0.1)
    history = json.loads(Path(result["history"]).read_text())["epochs"]
    loop_rate = history[-1]["samples_per_s"]  # second epoch: workers warm
    dev = torch.device(device)
    net = build("unet", in_channels=4, num_classes=6, base=16, depth=4).to(dev).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    loss_fn = build_loss("ce")
    x = torch.randn(batch, 4, tile, tile, device=dev)
    y = torch.randint(0, 6, (batch, tile, tile), device=dev)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(net(image=x), y).backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    model_rate = batch * steps / (time.perf_counter() - t0)
    save(f"training-{dev.type}", {
        "model": "unet base16 depth4", "tile": tile, "batch": batch, "steps": steps,
        "loop_samples_per_s": round(loop_rate, 2), "model_only_samples_per_s": round(model_rate, 2),
        "loop_over_model_only": round(loop_rate / model_rate, 3)})


MODEL_CONFIGS = {  # architecture → (hyper-parameters, input bands) as documented in docs/models.md
    "unet": ({"base": 16, "depth": 4}, 4),
    "mindist": ({}, 4),
    "fcsiamdiff": ({"base": 16, "depth": 4}, 3),
    "sgsln": ({}, 3),
    "glcnet": ({}, 4),
    "srcbtfusion": ({}, 3),
    "cafe": ({}, 3),
    "vsgnet": ({"vit": "vits14_reg"}, 3),
}


def bench_models(device: str, size: int = 512) -> None:
    """Parameters, MACs at size² and forward speed (MPix/s) of each documented model."""
    from torch.utils.flop_counter import FlopCounterMode
    from engine.formats.catalog import NEEDS_AUX
    from engine.models import architecture, build
    dev = torch.device(device)
    rows = {}
    for name, (hp, bands) in MODEL_CONFIGS.items():
        a = architecture(name)
        classes = 2 if a.task == "change" else 6
        net = build(name, in_channels=bands, num_classes=classes, **hp).to(dev).eval()
        x = torch.randn(1, bands, size, size, device=dev)
        inputs = {"t1": x, "t2": x.clone()} if a.task == "change" else {"image": x}
        if name in NEEDS_AUX:
            inputs["aux"] = torch.randn(1, 1, size, size, device=dev)
        with torch.inference_mode():
            counter = FlopCounterMode(display=False)
            with counter:
                net(**inputs)
            batch = {k: v.repeat(4, 1, 1, 1) for k, v in inputs.items()}
            net(**batch)
            t0 = time.perf_counter()
            net(**batch)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
        rows[name] = {"hparams": hp, "bands": bands, "task": a.task,
                      "parameters": sum(p.numel() for p in net.parameters()),
                      "gmacs_at_512": round(counter.get_total_flops() / 2 / 1e9, 2),
                      "mpix_per_s": round(4 * size * size / 1e6 / seconds, 3)}
    save(f"models-{dev.type}", {"input": f"{size}x{size}", "batch_for_speed": 4, "models": rows})


def bench_click(device: str, window: int = 512) -> None:
    """Click-to-segment latency: a cold click (model load + one window) and nearby clicks."""
    from engine.click.point import PredictionCache, segment_at
    src = scene(2048)
    m = model(SCENES / "unet-b16.rsmodel", 16, 4)
    with rasterio.open(src) as ds:
        left, top = ds.bounds.left, ds.bounds.top
    cache = PredictionCache()
    times = []
    for k, (dx, dy) in enumerate([(300, 300), (310, 305), (280, 320), (700, 700), (705, 690)]):
        t0 = time.perf_counter()
        r = segment_at(m, src, left + dx * 0.5, top - dy * 0.5, window=window, device=device,
                       cache=cache)
        times.append({"click": k, "seconds": round(time.perf_counter() - t0, 3),
                      "cached": bool(r["cached"]), "class": r["class_name"]})
    fresh = [t["seconds"] for t in times if not t["cached"]]
    save(f"click-{device}", {"model": "unet base16 depth4", "window": window, "clicks": times,
                             "first_click_s": times[0]["seconds"],
                             "uncached_click_s_max": max(fresh[1:] or fresh),
                             "cached_click_s_max": max([t["seconds"] for t in times if t["cached"]]
                                                       or [0.0])})


def bench_change(device: str, sizes: list) -> None:
    """Change detection: SGSLN seconds per 1024² pair, and peak RSS at two sizes (tiny
    FC-Siam-diff, each in a fresh process) — the same streaming stitcher as predict."""
    from engine.formats.create import init_model
    from engine.analysis.change import detect_change
    sg = SCENES / "sgsln.rsmodel"
    if not sg.exists():
        init_model("sgsln", 4, 2, sg)
    src = scene(1024)
    r = detect_change(sg, src, src.with_name("t2.tif"), SCENES / "change-1024.tif", device=device,
                      tile=512, overlap=64, batch_size=4)
    rows = []
    for size in sizes:
        scene(size)
        out = subprocess.run([sys.executable, __file__, "--change-rss-child", str(size),
                              "--device", device], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    save(f"change-{device}", {"model": "sgsln (full, random weights)", "pair": "1024x1024",
                              "tile": 512, "overlap": 64, "batch": 4,
                              "seconds_per_1024_pair": round(r["seconds"], 2),
                              "memory_model": "fcsiamdiff base4 depth2", "memory_runs": rows,
                              "ratio_largest_to_smallest": round(rows[-1]["peak_rss_mb"]
                                                                 / rows[0]["peak_rss_mb"], 3)})


def _change_rss_child(size: int, device: str) -> None:
    from engine.formats.create import init_model
    from engine.analysis.change import detect_change
    m = SCENES / "fcsiam-b4d2.rsmodel"
    if not m.exists():
        init_model("fcsiamdiff", 4, 2, m, hparams={"base": 4, "depth": 2})
    src = scene(size)
    r = detect_change(m, src, src.with_name("t2.tif"), SCENES / f"change-mem-{size}.tif",
                      device=device, tile=512, overlap=64, batch_size=8)
    print(json.dumps({"size": size, "peak_rss_mb": round(peak_rss_mb(), 1),
                      "seconds": round(r["seconds"], 1)}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", choices=("models", "inference", "memory", "training", "click",
                                      "change"), action="append")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--memory-sizes", default="2048,16384")
    p.add_argument("--peak-rss-child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--change-rss-child", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.peak_rss_child:
        _peak_rss_child(a.peak_rss_child, a.device)
        return
    if a.change_rss_child:
        _change_rss_child(a.change_rss_child, a.device)
        return
    todo = a.only or ["models", "inference", "memory", "training", "click", "change"]
    if "models" in todo:
        bench_models(a.device)
    if "inference" in todo:
        bench_inference(a.device, a.size, 8)
    if "memory" in todo:
        bench_memory(a.device, [int(s) for s in a.memory_sizes.split(",")])
    if "training" in todo:
        bench_training(a.device, 2048, 8, 6)
    if "click" in todo:
        bench_click(a.device)
    if "change" in todo:
        bench_change(a.device, [int(s) for s in a.memory_sizes.split(",")])


if __name__ == "__main__":
    main()
