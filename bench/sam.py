"""SAM click-to-segment speed (a benchmark, not a test): `python bench/sam.py`.

* decode   prompt encoder + mask decoder + up-sampling of one click on a cached window embedding
           (the ViT-B checkpoint's decoder; all SAM variants share it), point and box prompts,
           per torch thread count; median of 20 after 3 warm-ups
* encoder  image-encoder seconds per 1024² window for each variant asked (random weights: the
           cost does not depend on the values)
* click    engine.click.sam_click.sam_segment_at on a 2048² sample scene: the first click of a window
           (encode + decode + polygon) and nearby clicks in the same window (cached embedding);
           hover: the map tool's per-move call (cached window only, 1/4 resolution, int8
           up-scaling), median ms and updates/s
* decode runs through torch and through onnxruntime (engine.click.sam_onnx, on the CPU); "graph
           only" is the onnxruntime decoder graph without choosing and up-sampling the mask (the
           window's prompt-independent part is computed once, before the timing, as in use)

Writes bench/results/sam-<device>.json with the machine.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.run import SCENES, save, scene  # noqa: E402


def _median_ms(call, runs: int = 20, warmup: int = 3) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1000, 1)


def bench_decode(dev: torch.device, threads: list) -> list:
    from engine.models.sam import build_sam
    from engine.models.sam.predictor import Embedding, decode
    sam = build_sam("vit_b", seed=0).to(dev)
    with torch.inference_mode():
        emb = Embedding(torch.randn(1, 256, 64, 64, device=dev), sam.prompt_encoder.dense_pe(),
                        (1024, 1024), (1024, 1024))
    point, label = np.array([[500.0, 400.0]]), np.array([1])
    rows = []
    for n in threads if dev.type == "cpu" else [torch.get_num_threads()]:
        torch.set_num_threads(n)
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        rows.append({"threads": n,
                     "point_multimask_ms": _median_ms(
                         lambda: (decode(sam, emb, point, label), sync())),
                     "point_single_ms": _median_ms(
                         lambda: (decode(sam, emb, point, label, multimask=False), sync())),
                     "box_ms": _median_ms(
                         lambda: (decode(sam, emb, None, None, box=(300, 300, 700, 600)), sync()))})
        if dev.type == "cpu":
            rows[-1].update(_onnx_decode(sam, emb, n, point, label))
        print(rows[-1], flush=True)
    return rows


def _onnx_decode(sam, emb, threads: int, point, label) -> dict:
    """The same decodes through onnxruntime (engine.click.sam_onnx), and the graph alone."""
    from engine.click.sam_onnx import OnnxSamDecoder, prompts
    dec = OnnxSamDecoder(sam, threads=threads)
    coords, codes = prompts(emb, point, label, None)
    feeds = dict(dec.window_inputs(emb), point_coords=coords, point_labels=codes)
    return {"onnx_point_multimask_ms": _median_ms(lambda: dec.decode(emb, point, label)),
            "onnx_point_single_ms": _median_ms(
                lambda: dec.decode(emb, point, label, multimask=False)),
            "onnx_box_ms": _median_ms(lambda: dec.decode(emb, box=(300, 300, 700, 600))),
            "onnx_graph_only_ms": _median_ms(lambda: dec.session.run(None, feeds)),
            "onnx_int8_point_multimask_ms": _median_ms(
                lambda: dec.decode(emb, point, label, precision="int8")),
            "onnx_int8_graph_only_ms": _median_ms(lambda: dec.int8_session().run(None, feeds))}


def bench_encoder(dev: torch.device, variants: list, runs: int) -> list:
    from engine.models.sam import build_sam
    rows = []
    for name in variants:
        sam = build_sam(name, seed=0).to(dev)
        x = torch.randn(1, 3, 1024, 1024, device=dev)
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        seconds = _median_ms(lambda: (sam.embed(x), sync()), runs=runs, warmup=1) / 1000
        params = sum(p.numel() for p in sam.image_encoder.parameters())
        rows.append({"variant": name, "encoder_params_m": round(params / 1e6, 2),
                     "seconds_per_1024_window": round(seconds, 3)})
        print(rows[-1], flush=True)
        del sam
    return rows


def bench_click(dev: torch.device) -> dict:
    from engine.models.sam import build_sam
    from engine.click.sam_click import SamSession, sam_segment_at
    import rasterio
    weights = SCENES / "sam_vit_b_random.pth"
    if not weights.exists():
        SCENES.mkdir(parents=True, exist_ok=True)
        torch.save(build_sam("vit_b", seed=0).state_dict(), weights)
    src = scene(2048)
    with rasterio.open(src) as ds:
        left, top = ds.bounds.left, ds.bounds.top
    session = SamSession()
    session.model(weights, dev)                      # the checkpoint is read once per session
    clicks = []
    for k, (dx, dy) in enumerate([(300, 300), (310, 305), (280, 320), (900, 900)]):
        t0 = time.perf_counter()
        try:
            r = sam_segment_at(src, left + dx * 0.5, top - dy * 0.5, weights, window=1024,
                               device=str(dev), session=session)
            cached, found = bool(r["cached"]), True
        except Exception as exc:      # random weights may find no object: time it anyway
            cached, found = k in (1, 2), f"{type(exc).__name__}"
        clicks.append({"click": k, "seconds": round(time.perf_counter() - t0, 3),
                       "cached": cached, "object": found})
        print(clicks[-1], flush=True)
    positions = iter([(300 + 7 * (k % 40), 300 + 5 * (k % 30)) for k in range(10_000)])

    def hover() -> None:  # what the map tool runs per mouse move: an encoded window only
        dx, dy = next(positions)
        try:
            sam_segment_at(src, left + dx * 0.5, top - dy * 0.5, weights, window=1024,
                           device=str(dev), session=session, cached_only=True,
                           preview=4)  # the map tool's HOVER_COARSER
        except Exception:  # random weights may find no object at a position: timed anyway
            pass
    hover_ms = _median_ms(hover)
    print({"hover_ms": hover_ms}, flush=True)
    return {"window": 1024, "clicks": clicks, "hover_ms": hover_ms,
            "hover_updates_per_s": round(1000 / hover_ms, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", default="1,2", help="CPU thread counts for the decode timing")
    p.add_argument("--variants", default="vit_b", help="encoder variants to time")
    p.add_argument("--encoder-runs", type=int, default=1)
    p.add_argument("--skip-click", action="store_true")
    p.add_argument("--skip-encoder", action="store_true")
    a = p.parse_args()
    dev = torch.device(a.device)
    threads = [int(t) for t in a.threads.split(",")]
    result = {"decode": bench_decode(dev, threads)}
    torch.set_num_threads(max(threads))
    if not a.skip_encoder:
        result["encoder"] = bench_encoder(dev, a.variants.split(","), a.encoder_runs)
    if not a.skip_click:
        result["click"] = bench_click(dev)
    result["target"] = ("decode of a cached window ≤ 25 ms on 2 CPU threads (ViT-B sized "
                        "decoder); hover ≥ 20 updates/s")
    save(f"sam-{dev.type}", result)


if __name__ == "__main__":
    main()
