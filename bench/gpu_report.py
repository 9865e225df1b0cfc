"""The GPU check's figures as a docs/benchmarks.md section (no torch: testable anywhere).

`bench/gpu.py` writes bench/results/gpu.json; :func:`render` turns it into markdown naming the
device, and :func:`write_section` puts that between the section markers in the document
(replacing an earlier run's figures, or appending the section the first time).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

BEGIN = "<!-- gpu-check:begin -->"
END = "<!-- gpu-check:end -->"
TITLE = "## GPU check (issue 29)"
TARGET = 0.85  # end-to-end ≥ 85 % of model-only throughput


def _num(value: Any, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def render(results: Dict[str, Any]) -> str:
    """The section body (between the markers) for a results dictionary of `bench/gpu.py`."""
    m = results["machine"]
    lines: List[str] = [
        f"`make gpu-check` (`bench/gpu.py`) → `bench/results/gpu.json`, {results['date']}: "
        f"**{m['gpu']}** × {m['gpus']} ({m.get('gpu_memory_gb', '?')} GB), driver "
        f"{m.get('driver', '?')}, torch {m['torch']} (CUDA {m.get('cuda', '?')}), "
        f"{m.get('cpu', '?')} × {m.get('cores', '?')} cores. Whole check: "
        f"{_num(results['seconds'], 0)} s (budget {results['budget_s']} s).", ""]
    tests = results.get("tests")
    if tests:
        lines += [f"CUDA tests (`{tests['command']}`): **{tests['summary']}** "
                  f"(exit {tests['exit_code']}).", ""]
    models = results.get("models") or []
    if models:
        lines += ["| model | raster | batch | model-only fp32 MPix/s | model-only bf16 MPix/s | "
                  "end-to-end MPix/s (bf16) | end-to-end / model-only bf16 |",
                  "|---|---|---|---|---|---|---|"]
        for r in models:
            ratio = r.get("end_to_end_over_model_only")
            verdict = "" if ratio is None else (" ✔" if ratio >= TARGET else " ✘")
            lines.append(f"| {r['model']} | {r['raster']} | {r['batch']} | "
                         f"{_num(r.get('model_only_fp32_mpix_s'))} | "
                         f"{_num(r.get('model_only_bf16_mpix_s'))} | "
                         f"{_num(r.get('end_to_end_mpix_s'))} | "
                         f"**{_num(ratio, 3)}**{verdict} |")
        lines += ["", f"Target: end-to-end ≥ {TARGET:.0%} of model-only throughput.", ""]
    sweep = results.get("batch_sweep") or []
    if sweep:
        lines += ["Batch sweep, U-Net model-only with bf16 autocast:", "",
                  "| batch | " + " | ".join(str(r["batch"]) for r in sweep) + " |",
                  "|---|" + "---|" * len(sweep),
                  "| MPix/s | " + " | ".join(_num(r.get("mpix_s")) for r in sweep) + " |", ""]
    ranks = results.get("ranks") or []
    if ranks:
        lines += ["`torchrun` ranks, one GPU each, U-Net end-to-end `predict`:", "",
                  "| GPUs | seconds | MPix/s | speed-up |", "|---|---|---|---|"]
        base = ranks[0]["seconds"]
        for r in ranks:
            lines.append(f"| {r['gpus']} | {_num(r['seconds'])} | {_num(r['mpix_s'])} | "
                         f"{_num(base / r['seconds'])} × |")
        lines.append("")
    for note in results.get("skipped") or []:
        lines.append(f"* skipped: {note}")
    return "\n".join(lines).rstrip() + "\n"


def write_section(doc: Path, body: str) -> None:
    """Put ``body`` between the GPU-check markers of ``doc`` (appending the section when the
    markers are missing); the rest of the document is left as it is."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{body}{END}"
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n{TITLE}\n\n{block}\n"
    tmp = doc.with_name(f".{doc.name}.partial")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(doc)


def write_from_json(results_json: Path, doc: Path) -> None:
    """Render a saved results file into ``doc``."""
    write_section(doc, render(json.loads(results_json.read_text(encoding="utf-8"))))
