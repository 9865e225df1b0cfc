"""Sliding-window inference: the streaming pipeline and the segmentation entry point.

reader thread (windowed reads, normalise, batch, pin) → main thread (device, network under
inference_mode/AMP, stitcher, per-block conversion to output values) → writer threads
(block-aligned, compressed GeoTIFF).  Memory is bounded by the stitcher's carry rows, one window
row of output values and short queues, never by raster area.
"""
from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import rasterio

from ..compute import backend as xp
from . import sharded
from . import uncertainty as unsure
from ..compute.devices import resolve_device
from ..io.rasters import (WindowReader, bounded_gdal_cache, check_overlap, class_colormap, class_tags,
                         data_band_indexes, match_bands, normalise, open_raster, output_profile,
                         resolve_bands, warp_to_grid, without_alpha_flags, alpha_note)
from ..io.cog import AVERAGE, MODE, check_format, check_raster_outputs
from ..io.writer import StripWriter
from ..jobs import CancelledFn, InputError, Job, ModelFileError, ProgressFn, job_outputs
from ..formats.card import LoadedModel
from ..compute.threads import plan_threads
from .backends import backend_name, load_for_inference
from ..io.rasters import CLASS_NODATA
from ..formats.onnx.model import OnnxNetwork, check_tile
from .guard import fraction_note, input_notes
from ..io.radiometry import BandStats, image_statistics
from .range_guard import check_range
from .small_segments import small_segment_filter
from .thresholds import thresholded
from .tiling import Block, Grid, Stitcher, check_tiling, with_margin
from .tta import check_tta, with_tta
from .views import View, ViewOptions, class_fractions, make_view, native_view, normalisation

PROBABILITY_SCALE = 254  # uint8 probability = round(p * 254); 255 is nodata


@dataclass
class Source:
    """One named input of the network (a card input group): a window reader and its normalisation."""

    name: str
    reader: WindowReader
    mean: Sequence[float]
    std: Sequence[float]
    transform: Optional[Callable[[np.ndarray], np.ndarray]] = None  # e.g. histogram matching


@dataclass
class _Batch:
    inputs: List[Any]  # tensors, or numpy arrays without torch (engine.compute.backend)
    valid: Any
    positions: List[Tuple[int, int, int]]


_END = object()


def read_window(sources: Sequence[Source], x: int, y: int,
                size: int) -> Tuple[List[np.ndarray], np.ndarray]:
    """The window of ``size`` at (x, y) of every source, normalised as the network reads it,
    and where the output is valid."""
    arrays, valid, out_valid = [], None, None
    for src in sources:
        win = src.reader.read(x, y, size)
        if src.transform is not None:
            win.pixels = src.transform(win.pixels)
        valid = win.valid if valid is None else valid & win.valid
        out_valid = win.output_valid if out_valid is None else out_valid & win.output_valid
        arrays.append(win)
    return [normalise(w.pixels, valid, s.mean, s.std) for w, s in zip(arrays, sources)], out_valid


def _read_batches(sources: Sequence[Source], grid: Grid, rows: range, batch_size: int, pin: bool,
                  stop: threading.Event, out: "queue.Queue[Any]") -> None:
    """Reader thread body: read, normalise and batch the windows of ``rows`` in grid order.

    Batches are those of the whole grid (the i-th holds windows i·B … i·B+B−1), so a shard
    that starts or ends inside a batch reads all of it: the network then sees exactly the
    batches of a single process, and its scores are bit-identical (the caller skips windows
    outside ``rows``).
    """
    try:
        pending: List[Tuple[List[np.ndarray], np.ndarray, Tuple[int, int, int]]] = []
        every = list(grid.windows())
        cols = len(grid.xs)
        lo, hi = rows.start * cols, rows.stop * cols
        windows = every[lo // batch_size * batch_size:-(-hi // batch_size) * batch_size] \
            if hi > lo else []
        for i, (r, x, y) in enumerate(windows):
            if stop.is_set():
                return
            normed, out_valid = read_window(sources, x, y, grid.tile)
            pending.append((normed, out_valid, (r, x, y)))
            if len(pending) == batch_size or i == len(windows) - 1:
                inputs = [xp.from_numpy(np.stack([p[0][k] for p in pending]))
                          for k in range(len(sources))]
                mask = xp.from_numpy(np.stack([p[1] for p in pending]))
                if pin:
                    inputs = [t.pin_memory() for t in inputs]
                    mask = mask.pin_memory()
                _put(out, _Batch(inputs, mask, [p[2] for p in pending]), stop)
                pending = []
        _put(out, _END, stop)
    except BaseException as exc:  # handed to the main thread, which re-raises it
        _put(out, exc, stop)


def _read_in_gdal_env(*args: Any) -> None:
    """:func:`_read_batches` under the engine's GDAL environment: environments are per thread,
    and outside one GDAL prints its own error lines beside the engine's sentence."""
    with bounded_gdal_cache():
        _read_batches(*args)


def _put(out: "queue.Queue[Any]", item: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


ConvertFn = Callable[[Block], Sequence[np.ndarray]]
RowsFn = Callable[[int, List[np.ndarray]], None]


class RowAssembler:
    """Places the converted blocks of one window row into full-width arrays and hands them on.

    Converted values (class codes, uint8 probabilities) are a fraction of the float scores, so a
    full-width row of them is cheap where a row of scores would not be.
    """

    def __init__(self, width: int, convert: ConvertFn, on_rows: RowsFn) -> None:
        self._width, self._convert, self._on_rows = width, convert, on_rows
        self._rows: Optional[List[np.ndarray]] = None
        self._y = 0

    def put(self, block: Block) -> None:
        """Convert ``block`` and place it in the current row."""
        arrays = self._convert(block)
        if self._rows is None:
            self._rows = [np.empty(a.shape[:-1] + (self._width,), a.dtype) for a in arrays]
            self._y = block.y
        for row, a in zip(self._rows, arrays):
            row[..., block.x:block.x + a.shape[-1]] = a

    def finish(self, block: Block) -> None:
        """Place the row's last block and hand the finished row on."""
        self.put(block)
        rows, self._rows = self._rows, None
        self._on_rows(self._y, rows)


def write_rows(writers: Sequence[StripWriter]) -> RowsFn:
    """An ``on_rows`` that hands the i-th row array to the i-th writer."""
    def on_rows(y: int, rows: List[np.ndarray]) -> None:
        for writer, data in zip(writers, rows):
            writer.put(y, data)
    return on_rows


def run_sliding_window(forward: Callable[..., Any], sources: Sequence[Source],
                       grid: Grid, channels: int, device: Any, batch_size: int,
                       convert: ConvertFn, on_rows: RowsFn, job: Job,
                       label: str = "windows", rows: Optional[range] = None) -> None:
    """Stream every window of ``grid`` (or of its window ``rows``: a shard, see
    :mod:`engine.inference.sharded`) through ``forward`` and hand finished rows on.

    ``forward(inputs)`` maps a dict of B×C×T×T batches (one per source, keyed by its name) to
    B×channels×T×T scores (probabilities).  ``convert(block)`` turns a finished block's scores into
    output arrays (each K×h×w, e.g. class codes); ``on_rows(y, arrays)`` receives them as
    full-width rows, in order.  Both run on the calling thread.  Batches and scores are torch
    tensors on ``device`` when torch is installed, numpy arrays otherwise (:mod:`engine.compute.backend`).
    """
    q: "queue.Queue[Any]" = queue.Queue(maxsize=3)
    stop = threading.Event()
    rows = range(len(grid.ys)) if rows is None else rows
    reader = threading.Thread(target=_read_in_gdal_env, name="rs-seg-reader", daemon=True,
                              args=(sources, grid, rows, batch_size, device.type == "cuda", stop,
                                    q))
    reader.start()
    cols, done = len(grid.xs), 0
    total = max(cols * len(rows), 1)
    autocast = xp.autocast_context(device)
    channels_last = device.type == "cuda"
    assembler = RowAssembler(grid.width, convert, on_rows)
    try:
        with xp.inference_context(device):
            stitcher = Stitcher(grid, channels, device, first_row=rows.start)
            while True:
                item = q.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                job.check()
                inputs = [xp.to_device(t, device, channels_last) for t in item.inputs]
                with autocast:
                    scores = forward({s.name: t for s, t in zip(sources, inputs)})
                scores = xp.as_float32(scores)
                valid = xp.to_device(item.valid, device)
                for k, (r, x, y) in enumerate(item.positions):
                    if r not in rows:  # read only to complete a batch of the whole grid
                        continue
                    block = stitcher.add(x, y, scores[k], valid[k])
                    if block is not None:
                        assembler.put(block)
                    done += 1
                    if done % cols == 0:
                        assembler.finish(stitcher.finish_row())
                job.report(done / total, f"{label} {done}/{total}")
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                q.get_nowait()
        reader.join()


def softmax_forward(network: Any, card: Optional[Dict[str, Any]] = None
                    ) -> Callable[[Dict[str, Any]], Any]:
    """Class probabilities (softmax over channels) of a network called with named inputs; an
    ONNX network gives probabilities itself.  With a ``card`` that sets a threshold, Deepness's
    threshold rule follows (:mod:`engine.inference.thresholds`)."""
    if isinstance(network, OnnxNetwork):
        return thresholded(network, card or {})
    import torch

    def forward(inputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.softmax(xp.logits_of(network(**inputs)).float(), dim=1)
    return thresholded(forward, card or {})


def prepare_network(model: LoadedModel, device: Any) -> Any:
    """Move the network to ``device`` in eval mode (channels_last on CUDA); an ONNX network's
    session was placed on its device when loaded."""
    if isinstance(model.network, OnnxNetwork):
        return model.network
    net = model.network.to(device).eval()
    if device.type == "cuda":
        net = net.to(memory_format=xp.torch_module().channels_last)
    return net


def resolve_tiling(card: Dict[str, Any], tile: Optional[int], overlap: Optional[int]) -> Tuple[int, int]:
    """Tile and overlap from the arguments, falling back to the card; validated."""
    t = int(tile if tile is not None else card["tile_size"])
    o = int(overlap if overlap is not None else card["overlap"])
    onnx = card.get("onnx")
    if onnx is not None:  # the graph's own constraints; no torch registry needed
        check_tile(onnx, t)
        check_tiling(t, o, int(onnx.get("input_multiple", 1)), int(onnx.get("margin", 0)))
        return t, o
    from ..models import architecture
    check_tiling(t, o, architecture(card["architecture"]).input_multiple)
    return t, o


def open_sources(card: Dict[str, Any], image: rasterio.io.DatasetReader,
                 aux_path: Optional[str | Path], bands: Optional[Sequence[int]],
                 stack: contextlib.ExitStack, view: Optional[View] = None,
                 image_stats: Optional[BandStats] = None) -> List[Source]:
    """Window readers for the card's input groups; the aux raster is warped onto the image grid.

    ``view`` (default: native) sets the resolution the network reads at; normalisation follows
    the card's mode (``image_stats``: the image's band statistics, when already known).
    """
    groups = card["inputs"]
    img = groups["image"]
    view = view or native_view(card)
    reader = view.reader(image, resolve_bands(image, img["bands"], bands))
    sources = [Source("image", reader, *normalisation(img, reader, image_stats))]
    if "aux" in groups:
        if aux_path is None:
            raise InputError(f"this model needs an auxiliary raster "
                             f"({', '.join(b['name'] for b in groups['aux']['bands'])}); "
                             f"give it with --aux / AUX_INPUT")
        aux_ds = stack.enter_context(open_raster(aux_path))
        check_overlap(image, aux_ds, aux_path)
        if len(data_band_indexes(aux_ds)) != aux_ds.count == len(groups["aux"]["bands"]):
            aux_ds = stack.enter_context(without_alpha_flags(aux_ds))
        vrt = stack.enter_context(warp_to_grid(aux_ds, image.crs, image.transform, image.width,
                                               image.height))
        aux = groups["aux"]
        aux_reader = view.reader(vrt, resolve_bands(vrt, aux["bands"], None, "the aux raster"))
        sources.append(Source("aux", aux_reader, *normalisation(aux, aux_reader)))
    elif aux_path is not None:
        raise InputError("this model takes no auxiliary raster; remove --aux / AUX_INPUT")
    return sources


def image_band_statistics(card: Mapping[str, Any], image: str | Path,
                          bands: Optional[Sequence[int]] = None) -> BandStats:
    """The band statistics :func:`predict` normalises ``image`` with (the bands ``card``'s
    image group reads, or ``bands``): pass them as its ``statistics`` when predicting a crop of
    ``image``, so the crop is seen as in the whole image."""
    with open_raster(image) as ds:
        indexes = match_bands(ds, card["inputs"]["image"]["bands"], bands)[0]
        return image_statistics(WindowReader(ds, indexes))


@job_outputs
def predict(model: str | Path | LoadedModel, input: str | Path, output: str | Path,
            probabilities: Optional[str | Path] = None, aux: Optional[str | Path] = None,
            device: str = "auto", tile: Optional[int] = None, overlap: Optional[int] = None,
            batch_size: int = 8, bands: Optional[Sequence[int]] = None,
            gsd: str = "auto", input_gsd: Optional[float] = None,
            output_format: str = "gtiff", backend: str = "auto", precision: str = "fp32",
            tta: str = "none",
            progress: Optional[ProgressFn] = None,
            cancelled: Optional[CancelledFn] = None, uncertainty: Optional[str | Path] = None,
            uncertainty_measure: str = "margin",
            statistics: Optional[BandStats] = None) -> Dict[str, Any]:
    """Segment ``input`` with ``model`` and write a class raster (and optional probabilities).

    ``uncertainty``: also write a uint8 per-pixel uncertainty raster (``uncertainty_measure``
    ``margin`` or ``entropy``, :mod:`engine.inference.uncertainty`) from the same probabilities.

    ``gsd``: ``auto`` reads the input resampled to the model's GSD when they differ by more
    than 25 %, ``native`` never resamples, a number of metres reads at that GSD; ``input_gsd``
    gives the pixel size of a raster without georeferencing; ``output_format`` is ``gtiff`` or
    ``cog`` (Cloud-Optimized GeoTIFF with overviews, :mod:`engine.io.cog`); ``backend`` and
    ``precision`` pick the runtime (:mod:`engine.inference.backends`); ``tta`` averages each
    window's probabilities over flips or D4 (:mod:`.tta`).  ``statistics``: the image
    statistics to normalise with when ``input`` is a crop of a larger image, so the crop is
    seen as in the whole (default: sampled from ``input``).  Returns a summary: output
    paths, raster size, windows, seconds, MPix/s, the backend, the area share of each class and
    any domain notes.
    """
    job = Job(progress, cancelled)
    check_raster_outputs({"--output": output, "--probabilities": probabilities,
                          "--uncertainty": uncertainty},
                         [input, aux, model.path if isinstance(model, LoadedModel) else model])
    dev = sharded.rank_device(resolve_device(device))
    plan = plan_threads()
    lm = load_for_inference(model, dev, backend, precision, job, plan)
    card = lm.card
    if card["task"] == "pretrained":
        raise ModelFileError(f"{lm.path or 'the model'} is a self-supervised pre-trained backbone "
                             f"without classes; fine-tune it first: train --init {lm.path}")
    if card["task"] != "segmentation":
        raise ModelFileError(f"{lm.path or 'the model'} is a {card['task']} model; "
                             f"use it with 'change' (two dates), or pick a segmentation model")
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1 (got {batch_size})")
    check_format(output_format)
    check_tta(tta)
    unsure.check_measure(uncertainty_measure)
    t, o = resolve_tiling(card, tile, overlap)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        stack.enter_context(bounded_gdal_cache())
        stack.enter_context(rasterio.Env(GDAL_NUM_THREADS=str(plan.writer)))
        ds = stack.enter_context(open_raster(input))
        # a finer input is blended at the model's GSD, except in a sharded run (its part files
        # are cut along the grid's rows)
        view = make_view(ds, card, t, o, ViewOptions(gsd, input_gsd,
                                                     model_grid=sharded.world()[1] == 1))
        indexes, band_note = match_bands(ds, card["inputs"]["image"]["bands"], bands)
        stats = statistics or image_statistics(WindowReader(ds, indexes))
        range_note = check_range(card, "image", stats, ds.dtypes[indexes[0] - 1])
        notes = [n for n in [band_note, alpha_note(ds, indexes), range_note,
                             *(card.get("onnx") or {}).get("notes", [])]
                 if n] + input_notes(card, "image", stats, view.plan)
        for note in notes:
            job.log(note)
        sources = open_sources(card, ds, aux, bands, stack, view, stats)
        grid = with_margin(view.grid(ds.width, ds.height), card, view.tile)
        classes = card["classes"]
        lut = xp.asarray([c["value"] for c in classes], dev, "uint8")
        counts = xp.zeros((len(classes),), dev, "int64")
        shard = sharded.current(grid)
        writers = _segmentation_writers(stack, ds, card, output, probabilities, shard,
                                        output_format, uncertainty)
        net = prepare_network(lm, dev)

        def convert(block: Block) -> List[np.ndarray]:
            invalid = ~block.valid
            index = xp.argmax0(block.scores)
            counts[:] += xp.bincount(index[block.valid], minlength=len(classes))
            labels = lut[index]
            labels[invalid] = CLASS_NODATA
            out = [xp.to_numpy(labels[None])]
            if probabilities is not None:
                p = xp.to_uint8(block.scores * PROBABILITY_SCALE)
                p[:, invalid] = 255
                out.append(xp.to_numpy(p))
            if uncertainty is not None:
                out.append(xp.to_numpy(unsure.to_uint8(block.scores, block.valid,
                                                       uncertainty_measure)))
            return out

        totals = np.zeros(len(classes), np.int64)  # summed over the ranks of a sharded run
        # Deepness's small-segment filter needs rows across shard borders: one process only
        median = None if shard else small_segment_filter(card.get("small_segment"),
                                                         write_rows(writers))
        if shard and card.get("small_segment"):
            job.log("the small-segment filter is not applied in a sharded run")
        with sharded.collective(shard, writers, [totals]):
            on_rows = view.input_rows(median or write_rows(writers), sources[0].reader, stack)
            forward = view.wrap(with_tta(softmax_forward(net, card), tta))
            run_sliding_window(forward, sources, grid, len(classes), dev,
                               batch_size, convert, shard.keep(on_rows) if shard else on_rows, job,
                               label="segment: window", rows=shard.rows if shard else None)
            if median is not None:
                median.finish()
            totals += xp.to_numpy(counts)
    seconds = time.perf_counter() - started
    fractions = class_fractions(totals, classes)
    job.log(fraction_note(fractions))
    job.report(1.0, "segment: done")
    return {"output": str(output), "probabilities": str(probabilities) if probabilities else None,
            "uncertainty": str(uncertainty) if uncertainty else None,
            "width": ds.width, "height": ds.height, "windows": len(grid),
            "device": str(dev), "backend": backend_name(lm), "seconds": seconds,
            "mpix_per_s": ds.width * ds.height / 1e6 / max(seconds, 1e-9),
            "gsd_scale": view.plan.scale, "class_fractions": fractions, "notes": notes}


def _segmentation_writers(stack: contextlib.ExitStack, ds: rasterio.io.DatasetReader,
                          card: Dict[str, Any], output: str | Path,
                          probabilities: Optional[str | Path],
                          shard: Optional[sharded.Shard] = None,
                          output_format: str = "gtiff",
                          uncertainty: Optional[str | Path] = None) -> List[StripWriter]:
    classes = card["classes"]
    writers = [sharded.open_writer(shard, stack, output, output_format, MODE,
                                   output_profile(ds, 1, "uint8", CLASS_NODATA),
                                   colormap=class_colormap(classes), tags=class_tags(classes),
                                   descriptions=["class"])]
    if probabilities is not None:
        writers.append(sharded.open_writer(
            shard, stack, probabilities, output_format, AVERAGE,
            output_profile(ds, len(classes), "uint8", 255),
            descriptions=[f"p({c['name']})" for c in classes],
            scales=[1.0 / PROBABILITY_SCALE] * len(classes), tags=class_tags(classes)))
    if uncertainty is not None:
        writers.append(sharded.open_writer(
            shard, stack, uncertainty, output_format, AVERAGE,
            output_profile(ds, 1, "uint8", unsure.NODATA), descriptions=["uncertainty"],
            scales=[1.0 / unsure.SCALE]))
    return writers
