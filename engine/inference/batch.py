"""Segmentation of many rasters in one call: ``engine.predict_many`` and ``predict --output-dir``.

The model is loaded once and every input runs through :func:`engine.inference.pipeline.predict`.  All
output names are planned and checked before any work starts (an existing file is refused or,
with ``skip_existing``, its input skipped; two inputs mapping to one output are refused), so a
long run never stops half-way on a naming problem.  Progress is one bar over the windows of all
inputs.  A file that fails is reported and the others still run (``fail_fast`` stops at the
first failure instead); cancelling stops the whole call, and as every output is written to a
temporary name and renamed when complete, no half-written file is ever left.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from . import sharded
from ..compute.devices import resolve_device
from .pipeline import predict, resolve_tiling
from ..io.rasters import open_raster
from ..io.cog import check_extension, check_format
from ..jobs import (Cancelled, CancelledFn, EngineError, InputError, Job, ModelFileError,
                   OutputError, ProgressFn, check_distinct)
from ..formats.card import LoadedModel
from .backends import load_for_inference
from .tiling import with_margin
from .views import ViewOptions, make_view

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")
STEM = "{stem}"


class PartialFailure(EngineError):
    """Some inputs of a batch failed (the others were written); the CLI exits with code 3."""

    exit_code = 3


@dataclass
class _Item:
    input: Path
    output: Path
    probabilities: Optional[Path]
    windows: int = 1


def read_input_list(path: str | Path) -> List[Path]:
    """The raster paths listed in ``path``, one a line; blank lines and ``#`` comments are
    ignored, relative paths are relative to the list's folder."""
    p = Path(path)
    try:
        lines = p.read_text().splitlines()
    except OSError as exc:
        raise InputError(f"cannot read the input list {p} ({exc.strerror}); check the path") \
            from None
    names = [line.split("#", 1)[0].strip() for line in lines]
    return [p.parent / name for name in names if name]


def collect_inputs(inputs: Sequence[str | Path] = (),
                   input_list: Optional[str | Path] = None) -> List[Path]:
    """The rasters to process: ``inputs`` (a folder stands for its rasters — *.tif, *.tiff,
    *.vrt, *.img, *.jp2 — sorted by name) followed by those of ``input_list``."""
    found: List[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            rasters = sorted(f for f in p.iterdir()
                             if f.is_file() and f.suffix.lower() in RASTER_SUFFIXES)
            if not rasters:
                raise InputError(f"folder {p} holds no rasters ({', '.join(RASTER_SUFFIXES)}); "
                                 f"give another folder or the files themselves")
            found.extend(rasters)
        else:
            found.append(p)
    if input_list is not None:
        found.extend(read_input_list(input_list))
    if not found:
        raise InputError("no input rasters given; give --input FILE… or a folder, or "
                         "--input-list FILE")
    return found


def _target(output_dir: Path, pattern: str, stem: str, what: str) -> Path:
    try:
        name = pattern.format(stem=stem)
    except (KeyError, IndexError, ValueError):
        raise InputError(f"{what} pattern {pattern!r} may only use {STEM} (the input's file "
                         f"name without extension), e.g. {STEM}.tif") from None
    return output_dir / name


def plan_outputs(inputs: Sequence[Path], output_dir: str | Path, output_name: str = "{stem}.tif",
                 probabilities: Optional[str] = None,
                 skip_existing: bool = False) -> tuple[List[_Item], List[Path]]:
    """Each input's output (and probability) paths, checked before any work: returns the items
    to run and the inputs skipped because their output exists (``skip_existing``)."""
    out_dir = Path(output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"output folder {out_dir} is a file; give a folder with --output-dir")
    if probabilities is not None and len(inputs) > 1 and STEM not in probabilities:
        raise InputError(f"with several inputs --probabilities must be a name pattern with "
                         f"{STEM}, e.g. {STEM}_prob.tif (got {probabilities!r})")
    items = [_Item(p, _target(out_dir, output_name, p.stem, "output name"),
                   _target(out_dir, probabilities, p.stem, "probabilities")
                   if probabilities is not None else None) for p in inputs]
    targets: Dict[str, Optional[Path]] = {}
    for item in items:
        targets[f"the output of {item.input}"] = item.output
        targets[f"the probabilities of {item.input}"] = item.probabilities
    check_distinct(targets, inputs)
    for target in targets.values():
        if target is not None:
            check_extension(target)
    run, skipped = [], []
    for item in items:
        existing = [t for t in (item.output, item.probabilities) if t is not None and t.exists()]
        if existing and skip_existing:
            skipped.append(item.input)
        elif existing:
            raise OutputError(f"{existing[0]} already exists; remove it (or choose another "
                              f"--output-dir / OUTPUT_FOLDER), or pass --skip-existing / "
                              f"SKIP_EXISTING to keep it and skip {item.input.name}")
        else:
            run.append(item)
    return run, skipped


def _count_windows(items: Sequence[_Item], card: Dict[str, Any], t: int, o: int,
                   options: ViewOptions) -> None:
    """Set each item's window count, as :func:`engine.inference.pipeline.predict` will lay them out,
    so that one progress bar spans all inputs.  An input that cannot be planned keeps a weight
    of one window: :func:`predict` reports its problem when its turn comes."""
    for item in items:
        with contextlib.suppress(EngineError), open_raster(item.input) as ds:
            view = make_view(ds, card, t, o, options)
            item.windows = len(with_margin(view.grid(ds.width, ds.height), card, view.tile))


def predict_many(model: str | Path | LoadedModel, inputs: Sequence[str | Path],
                 output_dir: str | Path, output_name: str = "{stem}.tif",
                 probabilities: Optional[str] = None, skip_existing: bool = False,
                 fail_fast: bool = False, aux: Optional[str | Path] = None,
                 device: str = "auto", tile: Optional[int] = None,
                 overlap: Optional[int] = None, batch_size: int = 8,
                 bands: Optional[Sequence[int]] = None, gsd: str = "auto",
                 input_gsd: Optional[float] = None, output_format: str = "gtiff",
                 backend: str = "auto", precision: str = "fp32", tta: str = "none",
                 progress: Optional[ProgressFn] = None,
                 cancelled: Optional[CancelledFn] = None) -> Dict[str, Any]:
    """Segment every raster of ``inputs`` (files, or folders standing for their rasters) with
    ``model``, loaded once, into ``output_dir``.

    Outputs are named by ``output_name`` (``{stem}``: the input's name without extension);
    ``probabilities`` is a pattern too.  Other options are :func:`engine.inference.pipeline.predict`'s.
    Returns ``written`` (one predict summary per written file, with its ``input``), ``skipped``
    (inputs whose output exists), ``failed`` (``input`` and ``error`` message), ``not_run``
    (inputs left after a ``fail_fast`` stop), ``windows`` and ``seconds``.
    """
    job = Job(progress, cancelled)
    check_format(output_format)
    model = load_for_inference(model, sharded.rank_device(resolve_device(device)), backend,
                               precision, job)
    paths = collect_inputs(inputs)
    items, skipped = plan_outputs(paths, output_dir, output_name, probabilities, skip_existing)
    rank, size = sharded.world()
    if size > 1:
        # under torchrun the files are spread over the ranks, each running whole files; every
        # rank plans all names before any rank writes one (else a rank would find another's
        # fresh output and refuse it)
        sharded.gather(None)
        items = items[rank::size]
    with sharded.local():
        result = _run(model, items, output_dir, job, aux=aux, device=device, tile=tile,
                      overlap=overlap, batch_size=batch_size, bands=bands, gsd=gsd,
                      input_gsd=input_gsd, output_format=output_format, tta=tta,
                      fail_fast=fail_fast, cancelled=cancelled)
    result["skipped"] = [str(p) for p in skipped]
    if size > 1:
        parts = sharded.gather({k: result[k] for k in ("written", "failed", "not_run")})
        for key in ("written", "failed", "not_run"):
            result[key] = [entry for part in parts for entry in part[key]]
        result["windows"] = sum(w["windows"] for w in result["written"])
    return result


def _run(model: LoadedModel, items: Sequence[_Item], output_dir: str | Path,
         job: Job, *, aux: Optional[str | Path], device: str, tile: Optional[int],
         overlap: Optional[int], batch_size: int, bands: Optional[Sequence[int]], gsd: str,
         input_gsd: Optional[float], output_format: str, tta: str, fail_fast: bool,
         cancelled: Optional[CancelledFn]) -> Dict[str, Any]:
    """:func:`predict_many` over this process's ``items`` (already planned)."""
    started = time.perf_counter()
    lm = model
    t, o = resolve_tiling(lm.card, tile, overlap)  # a tiling problem is every file's: stop here
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    _count_windows(items, lm.card, t, o, ViewOptions(gsd, input_gsd))
    total = max(sum(i.windows for i in items), 1)
    written: List[Dict[str, Any]] = []
    failed: List[Dict[str, str]] = []
    done = 0
    for n, item in enumerate(items):
        job.check()
        share, name = item.windows / total, item.input.name

        def file_progress(fraction: float, message: str, base: float = done / total,
                          share: float = share, label: str = f"{n + 1}/{len(items)} {name}"):
            if fraction < 0:
                job.log(f"{label}: {message}")
            else:
                job.report(base + fraction * share, f"{label}: {message}")
        try:
            result = predict(lm, item.input, item.output, probabilities=item.probabilities,
                             aux=aux, device=device, tile=tile, overlap=overlap,
                             batch_size=batch_size, bands=bands, gsd=gsd, input_gsd=input_gsd,
                             output_format=output_format, tta=tta, progress=file_progress,
                             cancelled=cancelled)
            written.append({"input": str(item.input), **result})
        except (Cancelled, ModelFileError):  # a model of the wrong task fails every file alike
            raise
        except Exception as exc:  # any failure of one file: report it, run the others
            message = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
            failed.append({"input": str(item.input), "error": message})
            job.log(f"{name} failed: {message}")
            if fail_fast:
                break
        done += item.windows
        job.report(done / total, f"{n + 1}/{len(items)} files")
    finished = {w["input"] for w in written} | {f["input"] for f in failed}
    return {"written": written, "failed": failed,
            "not_run": [str(i.input) for i in items if str(i.input) not in finished],
            "windows": sum(w["windows"] for w in written),
            "seconds": time.perf_counter() - started}


def failure_summary(result: Dict[str, Any]) -> Optional[str]:
    """"N of M files failed: name: message; …", or None when none failed."""
    failed = result["failed"]
    if not failed:
        return None
    count = len(result["written"]) + len(failed) + len(result["not_run"])
    details = "; ".join(f"{Path(f['input']).name}: {f['error']}" for f in failed)
    tail = f" ({len(result['not_run'])} not run after --fail-fast)" if result["not_run"] else ""
    return f"{len(failed)} of {count} files failed: {details}{tail}"
