"""Change detection between two dates: ``engine.detect_change`` and ``python -m engine change``.

Methods: a trained change model (e.g. ``sgsln``, ``fcsiamdiff``); ``"cva"`` — training-free
change vector analysis with an Otsu threshold; ``"pcc"`` — post-classification comparison with a
segmentation model.  The after image is aligned onto the before image's grid over their
intersection (warped when CRS, resolution or extent differ).  Every method runs through the one
streaming sliding-window pipeline of :mod:`engine.inference.pipeline`; a segmentation model given alongside
classifies both dates in the same pass and yields a from-to raster and area table.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from rasterio.enums import Resampling

from ..compute import backend as xp
from ..inference import sharded
from ..compute.devices import resolve_device
from ..inference.pipeline import (PROBABILITY_SCALE, Source, prepare_network, resolve_tiling,
                        run_sliding_window, softmax_forward, write_rows)
from ..io.rasters import (WindowReader, bounded_gdal_cache, class_tags, data_band_indexes, intersection_grid,
                         match_bands, open_raster, output_profile, resolve_bands, same_grid, warp_to_grid,
                         without_alpha_flags)
from ..io.cog import AVERAGE, MODE, add_format_argument, check_format, check_raster_outputs
from ..io.writer import StripWriter
from ..jobs import (CancelledFn, InputError, Job, ModelFileError, ProgressFn, atomic_output,
                   job_outputs)
from ..formats.card import LoadedModel
from ..formats.modelfile import load_model
from ..formats.overrides import add_model_arguments, overrides_from_args
from ..inference.backends import add_backend_arguments, load_for_inference
from ..io.rasters import CLASS_NODATA
from ..inference.guard import EMPTY_CHANGE, empty_change_note, fraction_note, input_notes
from ..io.gsd import GsdPlan
from ..io.radiometry import BandStats, effective_affine, histogram_matcher, sample_pixels
from ..inference.range_guard import check_range
from ..inference.tiling import Block, Grid, with_margin
from ..inference.tta import add_tta_argument, check_tta, with_tta
from ..inference.views import View, ViewOptions, add_gsd_arguments, make_view, native_view, normalisation

COMMAND = "change"
HELP = "detect change between two dates (model, CVA or post-classification)"
CHANGE_COLOURS = {0: (0, 0, 0, 0), 1: (230, 30, 30, 255), CLASS_NODATA: (0, 0, 0, 0)}
CHANGE_NAMES = [{"value": 0, "name": "no change", "color": [0, 0, 0]},
                {"value": 1, "name": "change", "color": [230, 30, 30]}]
CLASSICAL_TILE = 512


def _load(model: str | Path | LoadedModel, device: Any, task: str, role: str,
          backend: str = "auto", precision: str = "fp32", job: Optional[Job] = None) -> LoadedModel:
    lm = load_for_inference(model, device, backend, precision, job)
    if lm.task != task:
        hint = ("use it as --segmentation-model for from-to change" if lm.task == "segmentation"
                else "use it as --model")
        raise ModelFileError(f"{lm.path or 'the model'} is a {lm.task} model but a {task} model "
                             f"is expected as {role}; {hint}")
    return lm


def _dates(t1: str | Path, t2: str | Path, stack: contextlib.ExitStack):
    """Both dates on one grid: t1's pixel grid over the intersection of the two rasters."""
    a = stack.enter_context(open_raster(t1))
    b = stack.enter_context(open_raster(t2))
    na, nb = len(data_band_indexes(a)), len(data_band_indexes(b))
    if na != nb and a.count == b.count:
        # An alpha flag on one date's last band (e.g. NIR) is not a mask: read all as data.
        na = nb = a.count
        a, b = (stack.enter_context(without_alpha_flags(d)) for d in (a, b))
    if na != nb:
        raise InputError(f"the dates have different band counts ({t1}: {na}, {t2}: {nb}); "
                         f"give two images of the same sensor and bands")
    if a.dtypes[0] != b.dtypes[0]:
        raise InputError(f"the dates have different data types ({a.dtypes[0]} and {b.dtypes[0]}); "
                         f"convert one so both have the same radiometric scale")
    transform, width, height = intersection_grid(a, b, t2)
    full = (width, height) == (a.width, a.height) and transform == a.transform
    g1 = a if full else stack.enter_context(
        warp_to_grid(a, a.crs, transform, width, height, Resampling.nearest))
    g2 = b if same_grid(b, g1) else stack.enter_context(
        warp_to_grid(b, g1.crs, transform, width, height, Resampling.bilinear))
    return g1, g2


def _cva_statistics(g1, g2, bands: List[int], job: Job, max_windows: int = 48,
                    tile: int = CLASSICAL_TILE) -> Tuple[Dict[str, tuple], float, float]:
    """Per-date band statistics, the Otsu threshold of the change magnitude and the share of
    sampled pixels above it, from a sample of windows spread over the scene (global statistics:
    never per-window min-max)."""
    grid = Grid(g1.width, g1.height, tile, 0)
    windows = list(grid.windows())
    rng = np.random.default_rng(0)
    pick = sorted(rng.choice(len(windows), size=min(max_windows, len(windows)), replace=False))
    r1, r2 = WindowReader(g1, bands), WindowReader(g2, bands)
    samples = []
    for i in pick:
        job.check()
        _, x, y = windows[i]
        w1, w2 = r1.read(x, y, tile), r2.read(x, y, tile)
        valid = w1.valid & w2.valid
        samples.append((w1.pixels[:, valid], w2.pixels[:, valid]))
    p1 = np.concatenate([s[0] for s in samples], axis=1).astype(np.float64)
    p2 = np.concatenate([s[1] for s in samples], axis=1).astype(np.float64)
    if p1.shape[1] == 0:
        raise InputError("the two dates share no valid pixels (nodata everywhere they overlap)")
    stats = {}
    for name, p in (("t1", p1), ("t2", p2)):
        stats[name] = (p.mean(1).tolist(), np.maximum(p.std(1), 1e-6).tolist())
    z1 = (p1 - np.asarray(stats["t1"][0])[:, None]) / np.asarray(stats["t1"][1])[:, None]
    z2 = (p2 - np.asarray(stats["t2"][0])[:, None]) / np.asarray(stats["t2"][1])[:, None]
    magnitude = np.sqrt(((z2 - z1) ** 2).sum(0))
    cut = otsu_threshold(magnitude)
    return stats, cut, float((magnitude > cut).mean())


def otsu_threshold(values: np.ndarray, bins: int = 512) -> float:
    """Otsu's threshold: the cut maximising the between-class variance of the histogram."""
    v = values[np.isfinite(values)]
    hi = float(np.percentile(v, 99.9)) if v.size else 1.0
    hist, edges = np.histogram(np.clip(v, 0, hi), bins=bins, range=(0, max(hi, 1e-6)))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(edges[1:][int(np.argmax(between))])


def _cva_forward(threshold: float) -> Callable[[Dict[str, Any]], Any]:
    """Change 'probability' rising through 0.5 exactly at the Otsu cut of the magnitude."""
    import torch
    scale = 4.0 / max(threshold, 1e-6)

    def forward(inputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        magnitude = torch.sqrt(((inputs["t2"] - inputs["t1"]) ** 2).sum(1, keepdim=True))
        p = torch.sigmoid((magnitude - threshold) * scale)
        return torch.cat([1 - p, p], dim=1)
    return forward


def _date_sources(card: Dict[str, Any], g1, g2, view: View,
                  options: ViewOptions) -> Tuple[List[Source], List[str]]:
    """The change model's t1/t2 sources (normalised per the card, t2 optionally histogram-matched
    to t1) and the domain guard's notes."""
    matched = [match_bands(ds, card["inputs"][name]["bands"], None, f"date {name}")
               for name, ds in (("t1", g1), ("t2", g2))]
    plain = [WindowReader(ds, bands) for ds, (bands, _) in zip((g1, g2), matched)]
    s1, s2 = (BandStats.of(p) for p in sample_pixels(plain))
    matcher = histogram_matcher(s2, s1) if options.match_histograms else None
    sources = []
    for name, ds, reader, stats in (("t1", g1, plain[0], s1), ("t2", g2, plain[1], s2)):
        spec = card["inputs"][name]
        if name == "t2" and matcher is not None:
            stats = s1  # matched t2 follows t1's distributions
        sources.append(Source(name, view.reader(ds, reader.bands),
                              *effective_affine(spec, stats),
                              transform=matcher if name == "t2" else None))
    ranges = [check_range(card, name, stats, ds.dtypes[0])
              for name, ds, stats in (("t1", g1, s1), ("t2", g2, s2))]
    bands = list(dict.fromkeys(note for _, note in matched if note))
    notes = bands + [n for n in ranges if n] + input_notes(card, "t1", s1, view.plan) + \
        input_notes(card, "t2", s2, None)
    return sources, notes


def _from_to_codes(k: int) -> Tuple[str, int]:
    """Data type and nodata of the from-to raster: code = from × k + to + 1 (0 = unchanged)."""
    return ("uint8", 255) if k * k + 1 < 255 else ("uint16", 65535)


@job_outputs
def detect_change(model: str | Path | LoadedModel | None, t1: str | Path, t2: str | Path,
                  output: str | Path, probabilities: Optional[str | Path] = None,
                  polygons: Optional[str | Path] = None, threshold: float = 0.5,
                  device: str = "auto", tile: Optional[int] = None, overlap: Optional[int] = None,
                  batch_size: int = 8, segmentation_model: str | Path | LoadedModel | None = None,
                  from_to: Optional[str | Path] = None, from_to_table: Optional[str | Path] = None,
                  gsd: str = "auto", input_gsd: Optional[float] = None,
                  match_histograms: bool = False, output_format: str = "gtiff",
                  backend: str = "auto", precision: str = "fp32", tta: str = "none",
                  progress: Optional[ProgressFn] = None,
                  cancelled: Optional[CancelledFn] = None) -> Dict[str, Any]:
    """Write a change map (uint8 0/1, nodata 255 where either date is nodata) between ``t1`` and
    ``t2``; optionally a change probability, change polygons and from-to change products.

    ``model`` is a change model file, ``"cva"`` / None (change vector analysis + Otsu) or
    ``"pcc"`` (post-classification comparison; needs ``segmentation_model``).  ``gsd`` and
    ``input_gsd`` work as in :func:`engine.inference.pipeline.predict` (the grid is t1's);
    ``match_histograms`` maps t2's band distributions onto t1's before the network sees them;
    ``output_format`` ``cog`` writes the rasters as Cloud-Optimized GeoTIFFs; ``backend`` and
    ``precision`` pick the runtime of the networks (:mod:`engine.inference.backends`); ``tta``
    averages the networks' probabilities over flips or D4 (:mod:`engine.inference.tta`; CVA is
    per pixel).
    """
    job = Job(progress, cancelled)
    dev = sharded.rank_device(resolve_device(device))
    method = "cva" if model is None else (model if model in ("cva", "pcc") else "model")
    if not 0 < threshold < 1:
        raise InputError(f"threshold must be between 0 and 1 (got {threshold})")
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1 (got {batch_size})")
    check_format(output_format)
    check_tta(tta)
    if method == "pcc" and segmentation_model is None:
        raise InputError("post-classification comparison (pcc) needs --segmentation-model")
    if from_to is not None and segmentation_model is None:
        raise InputError("a from-to raster needs --segmentation-model")
    if polygons is not None and Path(polygons).suffix.lower() != ".gpkg":
        raise InputError(f"change polygons are written as a GeoPackage; name it *.gpkg "
                         f"(got {Path(polygons).name})")
    if segmentation_model is not None and from_to is None:
        from_to = Path(output).with_name(Path(output).stem + "_from_to.tif")
    table = Path(from_to_table) if from_to_table else (
        Path(from_to).with_suffix(".csv") if from_to else None)
    check_raster_outputs(
        {"--output": output, "--probabilities": probabilities, "--from-to": from_to},
        [t1, t2, *(m for m in (model, segmentation_model) if isinstance(m, (str, Path))
                   and m not in ("cva", "pcc"))],
        {"--polygons": polygons, "--from-to-table": table,
         "the from-to summary": table.with_suffix(".json") if table else None})
    change_model = _load(model, dev, "change", "--model", backend, precision, job) \
        if method == "model" else None
    seg = (_load(segmentation_model, dev, "segmentation", "--segmentation-model", backend,
                 precision, job)
           if segmentation_model is not None else None)

    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        stack.enter_context(bounded_gdal_cache())
        g1, g2 = _dates(t1, t2, stack)
        sources: List[Source] = []
        forwards: List[Callable[[Dict[str, Any]], Any]] = []
        options = ViewOptions(gsd, input_gsd, match_histograms)
        notes: List[str] = []
        view = native_view(seg.card) if seg is not None else None
        if change_model is not None:
            card = change_model.card
            t, o = resolve_tiling(card, tile, overlap)
            view = make_view(g1, card, t, o, options)
            sources, notes = _date_sources(card, g1, g2, view, options)
            for note in notes:
                job.log(note)
            change_forward = with_tta(softmax_forward(prepare_network(change_model, dev)), tta)
            forwards.append(lambda x: change_forward({"t1": x["t1"], "t2": x["t2"]}))
        else:
            t = int(tile or (seg.card["tile_size"] if seg else CLASSICAL_TILE))
            o = int(overlap if overlap is not None else (seg.card["overlap"] if seg else 0))
        if method == "cva":
            bands = data_band_indexes(g1)
            if len(bands) != len(data_band_indexes(g2)):
                bands = list(range(1, g1.count + 1))
            job.report(0.0, "change: CVA statistics")
            stats, cut, _ = _cva_statistics(g1, g2, bands, job)
            job.log(f"change vector analysis: Otsu threshold {cut:.3f} (standardised magnitude)")
            for name, ds in (("t1", g1), ("t2", g2)):
                sources.append(Source(name, WindowReader(ds, bands), *stats[name]))
            forwards.append(_cva_forward(cut))
        k = 0
        if seg is not None:
            if change_model is None:
                t, o = resolve_tiling(seg.card, t, o)
                view = make_view(g1, seg.card, t, o, options)
            spec = seg.card["inputs"]["image"]
            for name, ds in (("s1", g1), ("s2", g2)):
                reader = view.reader(ds, resolve_bands(ds, spec["bands"], None, "the dates"))
                sources.append(Source(name, reader, *normalisation(spec, reader)))
            seg_forward = with_tta(softmax_forward(prepare_network(seg, dev)), tta)
            k = len(seg.card["classes"])
            forwards.append(lambda x: xp.concat(
                [seg_forward({"image": x[s]}) for s in ("s1", "s2")], axis=1))
        view = view or View(GsdPlan(1.0, None, None), t, o, t, o)
        main = change_model or seg
        grid = with_margin(view.grid(g1.width, g1.height), main.card if main else {}, view.tile)
        channels = (2 if method != "pcc" else 0) + 2 * k

        @view.wrap
        def forward(x: Dict[str, Any]) -> Any:
            return xp.concat([f(x) for f in forwards], axis=1)

        shard = sharded.current(grid)
        writers, pair_counts = _writers(stack, g1, output, probabilities, from_to, seg, k, shard,
                                        output_format)
        convert = _block_converter(writers, method, threshold, k, pair_counts)
        with sharded.collective(shard, list(writers.values()), list(pair_counts.values())):
            on_rows = write_rows(list(writers.values()))
            run_sliding_window(forward, sources, grid, channels, dev, batch_size, convert,
                               shard.keep(on_rows) if shard else on_rows, job,
                               label="change: window", rows=shard.rows if shard else None)
        pixel_area = abs(g1.transform.a * g1.transform.e)
        width, height = g1.width, g1.height
        changed = int(pair_counts["changed"][0])
        valid_px = int(pair_counts["valid"][0])
        fraction = changed / max(valid_px, 1)
        job.log(fraction_note({"no change": 1 - fraction, "change": fraction}))
        last_steps = shard is None or shard.rank == 0  # rank 0 alone holds the output
        if method == "model" and fraction < EMPTY_CHANGE and last_steps:
            bands = list(range(1, g1.count + 1))
            warning = empty_change_note(fraction, _cva_statistics(g1, g2, bands, job)[2])
            if warning:
                job.log(warning)
                notes.append(warning)
    result = {"output": str(output), "method": method,
              "probabilities": str(probabilities) if probabilities else None,
              "polygons": None, "from_to": str(from_to) if from_to else None,
              "from_to_table": None, "width": width, "height": height,
              "changed_fraction": fraction, "changed_area": changed * pixel_area,
              "gsd_scale": view.plan.scale, "notes": notes,
              "seconds": time.perf_counter() - started}
    if not last_steps:
        return result
    if polygons is not None:
        from .vectorize import vectorize
        job.report(0.99, "change: polygons")
        vectorize(output, polygons, values=[1], cancelled=cancelled)
        result["polygons"] = str(polygons)
    if seg is not None and table is not None:
        result["from_to_table"] = _write_from_to_table(table, seg.card["classes"],
                                                       pair_counts["pairs"], pixel_area)
    job.report(1.0, "change: done")
    return result


def _writers(stack: contextlib.ExitStack, grid_ds, output, probabilities, from_to,
             seg: Optional[LoadedModel], k: int, shard: Optional[sharded.Shard] = None,
             output_format: str = "gtiff"
             ) -> Tuple[Dict[str, StripWriter], Dict[str, np.ndarray]]:
    writers = {"change": sharded.open_writer(shard, stack, output, output_format, MODE,
                                             output_profile(grid_ds, 1, "uint8", CLASS_NODATA),
                                             colormap=CHANGE_COLOURS,
                                             tags=class_tags(CHANGE_NAMES),
                                             descriptions=["change"])}
    if probabilities is not None:
        writers["probability"] = sharded.open_writer(
            shard, stack, probabilities, output_format, AVERAGE,
            output_profile(grid_ds, 1, "uint8", 255), descriptions=["p(change)"],
            scales=[1.0 / PROBABILITY_SCALE])
    if from_to is not None and seg is not None:
        dtype, nodata = _from_to_codes(k)
        names = [c["name"] for c in seg.card["classes"]]
        codes = {"0": "unchanged"} | {str(i * k + j + 1): f"{names[i]} -> {names[j]}"
                                      for i in range(k) for j in range(k)}
        writers["from_to"] = sharded.open_writer(
            shard, stack, from_to, output_format, MODE,
            output_profile(grid_ds, 1, dtype, nodata), descriptions=["from-to class code"],
            tags={"RS_SEG_FROM_TO": json.dumps(codes),
                  **{f"CODE_{c}": n for c, n in codes.items()}})
    counts = {"pairs": np.zeros((max(k, 1), max(k, 1)), dtype=np.int64),
              "changed": np.zeros(1, dtype=np.int64), "valid": np.zeros(1, dtype=np.int64)}
    return writers, counts


def _block_converter(writers: Dict[str, StripWriter], method: str, threshold: float, k: int,
                     counts: Dict[str, np.ndarray]) -> Callable[[Block], List[np.ndarray]]:
    """Change, probability and from-to values of a finished block (in ``writers``' order); counts
    changed and valid pixels and from-to pairs on the way."""
    def convert(block: Block) -> List[np.ndarray]:
        invalid = ~block.valid
        scores = block.scores
        if k:
            c1 = xp.argmax0(scores[-2 * k:-k])
            c2 = xp.argmax0(scores[-k:])
        if method == "pcc":
            p_change = xp.to_dtype(c1 != c2, "float32")
        else:
            p_change = scores[1]
        changed = (p_change >= threshold) & ~invalid
        change = xp.to_dtype(changed, "uint8")
        change[invalid] = CLASS_NODATA
        out = [xp.to_numpy(change)[None]]
        counts["changed"] += int(changed.sum())
        counts["valid"] += int((~invalid).sum())
        if "probability" in writers:
            p = xp.to_uint8(p_change * PROBABILITY_SCALE)
            p[invalid] = 255
            out.append(xp.to_numpy(p)[None])
        if "from_to" in writers:
            dtype, nodata = _from_to_codes(k)
            code = xp.where(changed, c1 * k + c2 + 1, xp.zeros_like(c1))
            code[invalid] = nodata
            out.append(xp.to_numpy(code).astype(dtype)[None])
            pair = (c1 * k + c2)[changed]
            counts["pairs"] += xp.to_numpy(xp.bincount(pair, k * k))[:k * k].reshape(k, k)
        return out
    return convert


def _write_from_to_table(table: Path, classes: Sequence[Dict[str, Any]], pairs: np.ndarray,
                         pixel_area: float) -> str:
    """From-to areas of changed pixels as CSV and JSON (``table`` and ``table`` with .json)."""
    rows = [{"from_value": classes[i]["value"], "from": classes[i]["name"],
             "to_value": classes[j]["value"], "to": classes[j]["name"],
             "code": i * len(classes) + j + 1, "pixels": int(pairs[i, j]),
             "area": float(pairs[i, j] * pixel_area)}
            for i in range(len(classes)) for j in range(len(classes)) if pairs[i, j]]
    with atomic_output(table) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["from_value", "from", "to_value", "to", "code",
                                              "pixels", "area"])
            w.writeheader()
            w.writerows(rows)
    with atomic_output(table.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps({"area_unit": "CRS units²", "rows": rows}, indent=1))
    return str(table)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``change``."""
    p.add_argument("--model", default="cva",
                   help="change model file, 'cva' (default: change vector analysis + Otsu) or "
                        "'pcc' (post-classification comparison)")
    p.add_argument("--t1", required=True, help="the 'before' image")
    p.add_argument("--t2", required=True, help="the 'after' image (aligned onto --t1's grid)")
    p.add_argument("--output", required=True, help="change raster (0/1)")
    p.add_argument("--probabilities", help="change probability raster (uint8)")
    p.add_argument("--polygons", help="change polygons (GeoPackage) with areas")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--segmentation-model", help="classify both dates for from-to change")
    p.add_argument("--from-to", help="from-to raster (default: <output>_from_to.tif)")
    p.add_argument("--from-to-table", help="from-to area table CSV (JSON beside it)")
    p.add_argument("--device", default="auto")
    p.add_argument("--tile", type=int)
    p.add_argument("--overlap", type=int)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--match-histograms", action="store_true",
                   help="map t2's band distributions onto t1's before the model sees them")
    add_model_arguments(p, threshold=False)
    add_gsd_arguments(p)
    add_format_argument(p)
    add_backend_arguments(p)
    add_tta_argument(p)


def run(args: argparse.Namespace, progress=None) -> None:
    """Run ``change`` and print where the results went."""
    model = args.model
    if model not in ("cva", "pcc"):
        overrides = overrides_from_args(args)
        overrides.threshold = None  # the change threshold is --threshold's own
        model = load_model(model, args.device, overrides)
    r = detect_change(model, args.t1, args.t2, args.output, probabilities=args.probabilities,
                      polygons=args.polygons, threshold=args.threshold, device=args.device,
                      tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
                      segmentation_model=args.segmentation_model, from_to=args.from_to,
                      from_to_table=args.from_to_table, gsd=args.gsd, input_gsd=args.input_gsd,
                      match_histograms=args.match_histograms, output_format=args.format,
                      backend=args.backend, precision=args.precision, tta=args.tta,
                      progress=progress)
    print(f"wrote {r['output']} ({r['method']}): {100 * r['changed_fraction']:.2f} % changed, "
          f"{r['changed_area']:,.0f} CRS units² in {r['seconds']:.1f} s")
    for key in ("probabilities", "polygons", "from_to", "from_to_table"):
        if r.get(key):
            print(f"  {key:14s} {r[key]}")
