"""``python -m engine export --model M.rsmodel --output M.onnx`` (a graph for other tools) and
``python -m engine export --model M.rsmodel --quantize int8`` (RS Seg's int8 graph)."""
from __future__ import annotations

import argparse

from ...jobs import InputError
from .export import OPSET, export_onnx, summary_line

COMMAND = "export"
HELP = ("export a model file to ONNX (with Deepness metadata) for onnxruntime, Deepness, …, or "
        "quantise it to int8 for predict --precision int8")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``export``."""
    p.add_argument("--model", required=True, help="the .rsmodel file to export")
    p.add_argument("--output", help="the .onnx file to write (not with --quantize)")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    p.add_argument("--dynamic-size", action="store_true",
                   help="dynamic window size (Deepness needs the default: fixed at the tile)")
    p.add_argument("--quantize", choices=["int8"],
                   help="make the model's int8 graph (cached; run it with predict --precision "
                        "int8); its class agreement with fp32 goes into the model card")
    p.add_argument("--calibration", metavar="RASTER",
                   help="with --quantize: raster to calibrate on (default: the training rasters "
                        "recorded in the card)")
    p.add_argument("--calibration-windows", type=int, default=16, metavar="N",
                   help="with --quantize: tile windows read for calibration (default 16)")


def run(args: argparse.Namespace, progress=None) -> None:
    """Run ``export`` and print what was written."""
    if args.quantize:
        if args.output:
            raise InputError("--quantize makes RS Seg's own int8 graph (cached, used by predict "
                             "--precision int8); leave out --output, or export without "
                             "--quantize for other tools")
        if args.calibration_windows < 1:
            raise InputError("--calibration-windows must be at least 1")
        from .quantize import export_int8
        record = export_int8(args.model, args.calibration, args.calibration_windows,
                             progress=progress)
        print(f"int8 graph {record['graph']}: class agreement with fp32 "
              f"{100 * record['agreement']:.2f} % on {record['windows']} calibration windows; "
              f"recorded in {record['model']}; run it with predict --precision int8")
        return
    if not args.output:
        raise InputError("give --output FILE.onnx (or --quantize int8)")
    result = export_onnx(args.model, args.output, opset=args.opset,
                         dynamic_size=args.dynamic_size, progress=progress)
    print(summary_line(result))
    for note in result["notes"]:
        print(f"  note: {note}")
