"""``python -m engine export --model M.rsmodel --output M.onnx``."""
from __future__ import annotations

import argparse

from .export import OPSET, export_onnx, summary_line

COMMAND = "export"
HELP = "export a model file to ONNX (with Deepness metadata) for onnxruntime, Deepness, …"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``export``."""
    p.add_argument("--model", required=True, help="the .rsmodel file to export")
    p.add_argument("--output", required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    p.add_argument("--dynamic-size", action="store_true",
                   help="dynamic window size (Deepness needs the default: fixed at the tile)")


def run(args: argparse.Namespace, progress=None) -> None:
    """Run ``export`` and print what was written."""
    result = export_onnx(args.model, args.output, opset=args.opset,
                         dynamic_size=args.dynamic_size, progress=progress)
    print(summary_line(result))
    for note in result["notes"]:
        print(f"  note: {note}")
