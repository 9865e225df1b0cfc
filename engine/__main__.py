"""Command line: ``python -m engine <command> …`` (see ``--help``)."""
from __future__ import annotations

import os
import signal
import sys


def _cancelled_at_start(signum: int, frame: object) -> None:
    """Ctrl-C before the command runs (this module's imports, then the command modules' with
    torch's while the parser is built): nothing was written yet, so the process ends at once.
    Raising instead would put a KeyboardInterrupt into whatever code runs, and inside torch's
    C++ start-up (``torch._C._c10d_init``) pybind11 turns it into an abort (exit -6)."""
    sys.stderr.write("cancelled: no output was written\n")
    os._exit(130)


_interrupted = False


def _interrupt(signum: int, frame: object) -> None:
    """Ctrl-C while the command runs: a KeyboardInterrupt, remembered because an extension
    imported on the way (a lazy import; torch is loaded before this handler) may turn it into
    an ImportError."""
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


if __name__ == "__main__" and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
    signal.signal(signal.SIGINT, _cancelled_at_start)

import argparse
import json
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from . import __version__
from .jobs import Cancelled, EngineError


def _bands(text: str) -> List[int]:
    from .formats.overrides import comma_numbers
    return comma_numbers(int, "bands", "1,2,3")(text)


class _Bar:
    """tqdm progress bar fed by the job protocol's ``progress(fraction, message)``."""

    def __init__(self, desc: str) -> None:
        from tqdm import tqdm
        # under torchrun only rank 0 reports: the other ranks would repeat every line
        self._quiet = _worker_rank()
        self._bar = tqdm(total=1000, desc=desc, unit="‰", file=sys.stderr,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix} [{elapsed}<{remaining}]",
                         disable=True if self._quiet else None)

    def __call__(self, fraction: float, message: str) -> None:
        if self._quiet:
            return
        if fraction < 0:
            self._bar.write(message, file=sys.stderr)
            return
        self._bar.n = int(fraction * 1000)
        self._bar.set_postfix_str(message, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


def _with_bar(desc: str, call: Callable[[_Bar], object]) -> object:
    bar = _Bar(desc)
    try:
        return call(bar)
    finally:
        bar.close()


def cmd_sample(a: argparse.Namespace) -> None:
    from .sample import make_sample
    paths = _with_bar("sample", lambda bar: make_sample(a.out, size=a.size, seed=a.seed,
                                                        progress=bar))
    for key, path in paths.items():
        print(f"{key:10s} {path}")


def cmd_init_model(a: argparse.Namespace) -> None:
    from .formats.create import init_model
    path = init_model(a.arch, a.bands, a.classes, a.out, seed=a.seed,
                      band_names=a.band_names.split(",") if a.band_names else None,
                      class_names=a.class_names.split(",") if a.class_names else None,
                      tile_size=a.tile, overlap=a.overlap, gsd_m=a.gsd,
                      backbone_weights=a.backbone_weights,
                      progress=lambda fraction, message: print(message))
    weights = "pre-trained encoder" if a.backbone_weights else "random weights"
    print(f"wrote {path} ({a.arch}, {a.bands} bands, {a.classes} classes, {weights})")


def _load(a: argparse.Namespace, device, output: Optional[int] = None):
    """The model with the definition beside it and the command line's overrides applied."""
    from .formats.overrides import load_defined, overrides_from_args
    overrides = overrides_from_args(a)
    if output is not None:
        overrides.output = output
    return load_defined(a.model, device, overrides)


def cmd_info(a: argparse.Namespace) -> None:
    card = _load(a, "cpu").card
    if a.json:
        print(json.dumps(card, indent=2))
        return
    print(format_card(card))


def format_card(card: dict) -> str:
    """A readable multi-line summary of a model card."""
    lines = [f"{card.get('name', card['architecture'])}",
             f"  task          {card['task']}",
             f"  architecture  {card['architecture']} {json.dumps(card.get('hparams', {}))}",
             f"  schema        {card['schema_version']} (engine {card.get('engine_version', '?')})"]
    for group, spec in card["inputs"].items():
        bands = ", ".join(b["name"] for b in spec["bands"])
        lines.append(f"  input {group:7s} {len(spec['bands'])} bands ({bands}), {spec.get('dtype')}, "
                     f"nodata {spec.get('nodata')}")
        stats = ", ".join(f"{m:.4g}±{s:.4g}" for m, s in zip(spec["mean"], spec["std"]))
        lines.append(f"                normalisation {spec.get('normalisation', 'dataset')}: {stats}")
    lines.append(f"  tiling        tile {card['tile_size']}, overlap {card['overlap']}, "
                 f"GSD {card.get('gsd_m') or 'unknown'} m")
    if card.get("threshold") is not None:
        lines.append(f"  threshold     {card['threshold']:g} (probabilities below it count as 0)")
    if card.get("small_segment"):
        lines.append(f"  small segments median filter of {card['small_segment']} px")
    if card.get("definition"):
        lines.append(f"  definition    {json.dumps(card['definition'])}")
    lines.append(f"  classes       {len(card['classes'])}")
    for c in card["classes"]:
        r, g, b = c["color"]
        lines.append(f"    {c['value']:3d}  {c['name']:20s} #{r:02x}{g:02x}{b:02x}")
    lineage = card.get("lineage")
    if lineage:  # a model refined on corrections (engine refine)
        held = (lineage.get("scores") or {}).get("held_out") or {}
        score = (f", held-out accuracy {held['accuracy']:.3f}"
                 if held.get("accuracy") is not None else "")
        lines.append(f"  lineage       round {lineage['round']} of {lineage.get('parent_name')} "
                     f"({lineage['date']}): {lineage['corrections']} corrections{score}")
    training = card.get("training") or {}
    for k, v in training.items():
        lines.append(f"  training.{k:12s} {v if not isinstance(v, (dict, list)) else json.dumps(v)}")
    onnx = card.get("onnx")
    if onnx:
        fixed = f"{onnx['size']} px" if onnx.get("size") else "dynamic"
        lines.append(f"  onnx          card from {onnx['source']}, output '{onnx['output']}' "
                     f"({onnx['activation']}{', binary' if onnx['binary'] else ''}), window "
                     f"{fixed}, batch {onnx.get('batch') or 'dynamic'}, margin {onnx['margin']}, "
                     f"on {', '.join(onnx.get('providers') or [])}")
    return "\n".join(lines)


def cmd_predict(a: argparse.Namespace) -> None:
    from .inference.batch import collect_inputs
    from .compute.devices import resolve_device
    inputs = collect_inputs(a.input or (), a.input_list)
    single = len(inputs) == 1 and inputs[0] == Path(a.input[0]) if a.input else False
    if a.output is not None and a.output_dir is not None:
        raise EngineError("give either --output FILE (one input) or --output-dir DIR, not both")
    if a.output is not None and not single:
        raise EngineError(f"--output names one file but {len(inputs)} inputs were given; write "
                          f"them to a folder with --output-dir DIR (file names from "
                          f"--output-name, default {{stem}}.tif)")
    if a.output is None and a.output_dir is None:
        raise EngineError("give --output FILE for the segmented raster, or --output-dir DIR "
                          "for several inputs")
    if a.output is not None:  # refused before the model loads (predict checks again, and locks)
        from .io.cog import check_raster_outputs
        check_raster_outputs({"--output": a.output, "--probabilities": a.probabilities,
                              "--uncertainty": a.uncertainty},
                             [a.input[0], a.aux, a.model])
    model = _load(a, resolve_device(a.device))
    if a.output_dir is not None:
        if a.uncertainty:
            raise EngineError("--uncertainty writes the raster of one input; use it with "
                              "--output FILE")
        return _predict_many(a, model, inputs)
    from .formats.outputs import each_output, output_names
    names = output_names(model)
    for index, name, output in each_output(a.output, names, a.output_index or 0):
        lm = model if index == (a.output_index or 0) else _load(a, resolve_device(a.device), index)
        _predict_one(a, lm, output, a.probabilities if len(names) == 1 else None)
    if len(names) > 1 and "{output}" not in a.output:
        print(f"note: the model has {len(names)} outputs ({', '.join(names)}); this wrote "
              f"'{names[a.output_index or 0]}' only: put {{output}} in --output to write each")


def _predict_one(a: argparse.Namespace, model, output: str, probabilities) -> None:
    from .inference.pipeline import predict
    result = _with_bar("segment", lambda bar: predict(
        model, a.input[0], output, probabilities=probabilities, aux=a.aux, device=a.device,
        tile=a.tile, overlap=a.overlap, batch_size=a.batch_size, bands=a.bands, gsd=a.gsd,
        input_gsd=a.input_gsd, output_format=a.format, backend=a.backend,
        precision=a.precision, tta=a.tta, progress=bar,
        uncertainty=a.uncertainty, uncertainty_measure=a.uncertainty_measure))
    extras = [result[k] for k in ("probabilities", "uncertainty") if result[k]]
    print(f"wrote {result['output']}" + "".join(f" and {e}" for e in extras))
    print(f"{result['width']}x{result['height']} px, {result['windows']} windows on "
          f"{result['device']} ({result['backend']}) in {result['seconds']:.1f} s "
          f"({result['mpix_per_s']:.2f} MPix/s)")


def _predict_many(a: argparse.Namespace, model, inputs: List[Path]) -> None:
    from .inference.batch import PartialFailure, failure_summary, predict_many
    result = _with_bar("segment", lambda bar: predict_many(
        model, inputs, a.output_dir, output_name=a.output_name, probabilities=a.probabilities,
        skip_existing=a.skip_existing, fail_fast=a.fail_fast, aux=a.aux, device=a.device,
        tile=a.tile, overlap=a.overlap, batch_size=a.batch_size, bands=a.bands, gsd=a.gsd,
        input_gsd=a.input_gsd, output_format=a.format, backend=a.backend, precision=a.precision,
        tta=a.tta, progress=bar))
    for w in result["written"]:
        print(f"wrote {w['output']}" + (f" and {w['probabilities']}" if w["probabilities"] else ""))
    for path in result["skipped"]:
        print(f"skipped {path} (its output exists)")
    print(f"{len(result['written'])} written, {len(result['skipped'])} skipped, "
          f"{len(result['failed'])} failed; {result['windows']} windows in "
          f"{result['seconds']:.1f} s")
    summary = failure_summary(result)
    if summary:
        raise PartialFailure(summary)


# Commands living in their own modules: each has COMMAND, HELP, add_arguments(p), run(args, progress).
COMMAND_MODULES = ("engine.training.cli", "engine.training.pretrain", "engine.training.refine",
                   "engine.analysis.change", "engine.analysis.vectorize",
                   "engine.analysis.evaluation", "engine.analysis.derive", "engine.analysis.places",
                   "engine.formats.onnx.cli",
                   "engine.formats.catalogue_cli", "engine.formats.describe")


def _module_command(module_name: str):
    import importlib
    module = importlib.import_module(module_name)

    def run(a: argparse.Namespace) -> None:
        _with_bar(module.COMMAND, lambda bar: module.run(a, progress=bar))
    return module, run


def _add_onnx_options(s: argparse.ArgumentParser) -> None:
    from .formats.overrides import add_model_arguments
    add_model_arguments(s)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine",
                                description="RS Seg engine: segmentation and change detection "
                                            "of remote-sensing rasters")
    p.add_argument("--version", action="version", version=f"rs-seg engine {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sample", help="write a synthetic georeferenced sample scene")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--size", type=int, default=1024, help="edge length in pixels (default 1024)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_sample)

    s = sub.add_parser("init-model", help="create a model file with random weights")
    s.add_argument("--arch", default="unet")
    s.add_argument("--bands", type=int, required=True)
    s.add_argument("--classes", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--band-names", help="comma-separated, e.g. R,G,B,NIR")
    s.add_argument("--class-names", help="comma-separated class names")
    s.add_argument("--tile", type=int, default=512)
    s.add_argument("--overlap", type=int, default=64)
    s.add_argument("--gsd", type=float, default=None, help="ground sampling distance in metres")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--backbone-weights", metavar="FILE",
                   help="published pre-trained encoder weights (ResNet torchvision/timm, "
                        "R50+ViT-B_16.npz, DINOv2), recognised by their key layout")
    s.set_defaults(func=cmd_init_model)

    s = sub.add_parser("info", help="print a model file's card")
    s.add_argument("model")
    s.add_argument("--json", action="store_true", help="print the raw card as JSON")
    _add_onnx_options(s)
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("predict", help="segment a raster with a model (sliding window)")
    s.add_argument("--model", required=True)
    # --image and --out as train, refine and places spell them: an analyst types those here too
    s.add_argument("--input", "--image", nargs="+", metavar="RASTER",
                   help="the raster(s) to segment, or a folder (its *.tif, *.tiff, *.vrt, *.img, "
                        "*.jp2); --image is the same")
    s.add_argument("--input-list", metavar="FILE",
                   help="a file listing input rasters, one a line (# comments)")
    s.add_argument("--output", "--out", help="the class raster of a single input (--out is "
                                             "the same)")
    s.add_argument("--output-dir", metavar="DIR", help="folder for the outputs of many inputs")
    s.add_argument("--output-name", default="{stem}.tif",
                   help="output file name pattern with --output-dir; {stem} is the input's name "
                        "without extension (default {stem}.tif)")
    s.add_argument("--skip-existing", action="store_true",
                   help="with --output-dir: skip inputs whose output exists (default: refuse)")
    stop = s.add_mutually_exclusive_group()
    stop.add_argument("--keep-going", dest="fail_fast", action="store_false",
                      help="with several inputs: run the others when one fails (default)")
    stop.add_argument("--fail-fast", action="store_true",
                      help="with several inputs: stop at the first failure")
    s.add_argument("--probabilities", help="optional per-class probability raster (uint8); "
                                           "with --output-dir a pattern, e.g. {stem}_prob.tif")
    s.add_argument("--uncertainty", metavar="FILE",
                   help="optional per-pixel uncertainty raster (uint8, 0 certain … 254 unsure), "
                        "from the same probabilities")
    s.add_argument("--uncertainty-measure", choices=("margin", "entropy"), default="margin",
                   help="margin: 1 - (p1 - p2) of the two likeliest classes (default); entropy: "
                        "normalised class entropy")
    s.add_argument("--aux", help="auxiliary raster (e.g. DSM) for multimodal models")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    s.add_argument("--tile", type=int, help="window edge in pixels (default: model card)")
    s.add_argument("--overlap", type=int, help="pixels shared by neighbouring windows")
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--bands", type=_bands, help="raster bands to use, in the model's order")
    _add_onnx_options(s)
    from .inference.views import add_gsd_arguments
    add_gsd_arguments(s)
    from .io.cog import add_format_argument
    add_format_argument(s)
    from .inference.backends import add_backend_arguments
    add_backend_arguments(s)
    from .inference.tta import add_tta_argument
    add_tta_argument(s)
    s.set_defaults(func=cmd_predict, fail_fast=False)

    for name in COMMAND_MODULES:
        try:
            module, run = _module_command(name)
        except ModuleNotFoundError as exc:
            if exc.name != "torch":
                raise
            _needs_torch(sub, name)
            continue
        s = sub.add_parser(module.COMMAND, help=module.HELP)
        module.add_arguments(s)
        s.set_defaults(func=run)
    return p


def _needs_torch(sub: argparse._SubParsersAction, module_name: str) -> None:
    """Without torch (ONNX-only installs) a torch command still parses and says what to do."""
    command = {"engine.training.cli": "train"}.get(module_name, module_name.rsplit(".", 1)[-1])

    def refuse(a: argparse.Namespace) -> None:
        raise EngineError(f"'{command}' needs torch, which is not installed (ONNX models run "
                          f"without it); install it with: {sys.executable} -m pip install "
                          f"torch==2.13.0")
    # no option prefix: every argument lands in `rest`, so any command line reaches `refuse`
    s = sub.add_parser(command, help="(needs torch)", add_help=False, prefix_chars="\0")
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(func=refuse)


def _worker_rank() -> bool:
    """True on the ranks of a torchrun job other than rank 0."""
    from .inference.sharded import world
    return world()[0] > 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; the exit status: 0 done, 2 a sentence on stderr (3: some files of a
    batch failed), 130 cancelled (Ctrl-C at any moment, the imports at start-up included)."""
    try:
        return _run(argv)
    except BaseException as exc:
        if not isinstance(exc, KeyboardInterrupt) and not (_interrupted
                                                           and isinstance(exc, Exception)):
            raise
        print("cancelled: no output was written", file=sys.stderr)
        return 130


def _run(argv: Optional[Sequence[str]]) -> int:
    args = build_parser().parse_args(argv)
    if signal.getsignal(signal.SIGINT) is _cancelled_at_start:  # from here: KeyboardInterrupt
        signal.signal(signal.SIGINT, _interrupt)
    if _worker_rank():  # rank 0 prints the summary; errors still reach stderr
        sys.stdout = open(os.devnull, "w")
    from .inference.sharded import leave  # a torchrun job's ranks leave together (no-op otherwise)
    try:
        args.func(args)
        leave()
        if signal.getsignal(signal.SIGINT) is _interrupt:
            # the outputs are complete: a Ctrl-C while the interpreter shuts down must neither
            # report them cancelled nor kill the process by the signal
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        leave()
        return getattr(exc, "exit_code", 2)  # 3: some files of a batch failed
    except (Cancelled, KeyboardInterrupt) as exc:
        # a training keeps the best model of its finished epochs: the sentence says so
        print(f"cancelled: {getattr(exc, 'kept', None) or 'no output was written'}",
              file=sys.stderr)
        return 130
    except Exception as exc:  # a raster GDAL cannot read, wherever it was read: one sentence
        from .io.rasters import read_failure
        failure = read_failure(exc)
        if failure is None:
            raise
        print(f"error: {failure}", file=sys.stderr, flush=True)
        leave()
        return 2
    return 0


if __name__ == "__main__":
    status = main()
    if status == 130:
        # a Ctrl-C that landed in Python code run by a C extension (torch's import runs some)
        # leaves CPython's "unhandled interrupt" flag set although main() handled it, and the
        # interpreter would end by re-raising SIGINT instead of exiting with 130; the outputs
        # were already cleaned up on the way out of main()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
