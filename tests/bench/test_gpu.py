"""`make gpu-check` on a box without CUDA: its arguments, its refusal, and the figures it
writes into docs/benchmarks.md from a results file (the parts that need no GPU)."""
from __future__ import annotations

import json

import pytest
import torch

from bench import gpu
from bench.gpu_report import BEGIN, END, TITLE, render, write_section

RESULTS = {
    "machine": {"gpu": "NVIDIA H100 80GB HBM3", "gpus": 2, "gpu_memory_gb": 79.1,
                "driver": "550.54", "torch": "2.13.0+cu126", "cuda": "12.6",
                "cpu": "Intel Xeon Platinum", "cores": 16},
    "date": "2026-12-06 16:00 UTC", "budget_s": 450.0, "seconds": 401.2,
    "tests": {"command": "pytest -k 'cuda or gpu' tests/engine", "exit_code": 0,
              "summary": "7 passed, 590 deselected in 61.2s"},
    "models": [{"model": "U-Net base 16 depth 4", "raster": "4096²", "batch": 8,
                "model_only_fp32_mpix_s": 41.0, "model_only_bf16_mpix_s": 80.0,
                "end_to_end_mpix_s": 72.0, "end_to_end_over_model_only": 0.9},
               {"model": "SGSLN full", "raster": "2048²", "batch": 8,
                "model_only_fp32_mpix_s": 9.0, "model_only_bf16_mpix_s": 15.0,
                "end_to_end_mpix_s": 11.0, "end_to_end_over_model_only": 0.733}],
    "batch_sweep": [{"batch": 4, "mpix_s": 60.5}, {"batch": 16, "mpix_s": 85.25}],
    "ranks": [{"gpus": 1, "seconds": 20.0, "mpix_s": 0.84}, {"gpus": 2, "seconds": 12.5,
                                                             "mpix_s": 1.34}],
    "skipped": ["sweep (--skip)"]}


def test_arguments_are_checked():
    a = gpu.parse_args(["--batches", "2,4", "--skip", "tests,ranks", "--budget-s", "300"])
    assert a.batches == [2, 4] and a.skip == {"tests", "ranks"} and a.budget_s == 300
    for bad in (["--batches", "4,x"], ["--batches", "0"], ["--skip", "everything"],
                ["--budget-s", "0"], ["--size", "100"]):
        with pytest.raises(SystemExit) as exc:
            gpu.parse_args(bad)
        assert exc.value.code == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_refuses_clearly_without_cuda(tmp_path, capsys):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n")
    assert gpu.main(["--doc", str(doc), "--results", str(tmp_path / "gpu.json")]) == 2
    err = capsys.readouterr().err
    assert "needs a CUDA GPU" in err and "torch 2.13.0" in err and "nvidia-smi" in err
    assert doc.read_text() == "# Benchmarks\n" and not (tmp_path / "gpu.json").exists()


def test_render_names_the_device_and_every_figure():
    text = render(RESULTS)
    assert "**NVIDIA H100 80GB HBM3** × 2 (79.1 GB)" in text and "CUDA 12.6" in text
    assert "**7 passed, 590 deselected in 61.2s**" in text
    assert "| U-Net base 16 depth 4 | 4096² | 8 | 41.00 | 80.00 | 72.00 | **0.900** ✔ |" in text
    assert "| SGSLN full | 2048² | 8 | 9.00 | 15.00 | 11.00 | **0.733** ✘ |" in text
    assert "| batch | 4 | 16 |" in text and "| MPix/s | 60.50 | 85.25 |" in text
    assert "| 2 | 12.50 | 1.34 | 1.60 × |" in text
    assert "* skipped: sweep (--skip)" in text


def test_section_is_appended_then_replaced_in_place(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    write_section(doc, "first run\n")
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\n## Other\n\nkept\n")
    assert f"{TITLE}\n\n{BEGIN}\nfirst run\n{END}\n" in text
    doc.write_text(text + "\n## After\n\nalso kept\n")
    write_section(doc, "second run\n")
    text = doc.read_text()
    assert "first run" not in text and text.count(BEGIN) == 1 and "second run" in text
    assert text.endswith("## After\n\nalso kept\n") and "kept\n" in text


def test_write_doc_renders_a_saved_results_file(tmp_path, capsys):
    saved = tmp_path / "gpu.json"
    saved.write_text(json.dumps(RESULTS))
    doc = tmp_path / "benchmarks.md"
    assert gpu.main(["--write-doc", str(saved), "--doc", str(doc)]) == 0
    assert "NVIDIA H100 80GB HBM3" in doc.read_text()
