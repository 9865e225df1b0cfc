"""Ctrl-C at any moment of a command — during the imports at start-up, model loading or the
run — ends with "cancelled", exit 130, no traceback and no file left behind; a training's best
model of its finished epochs is kept, and the sentence says so."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.formats.modelfile import read_card
from tests.conftest import ROOT, make_model, write_raster
from tests.engine import bad_input_table

CASE = "any command: Ctrl-C at any moment"
TRAINING_CASE = "train: Ctrl-C once an epoch is done"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("interrupt")
    rng = np.random.default_rng(0)
    image = write_raster(folder / "image.tif", rng.integers(0, 255, (3, 1024, 1024), np.uint8))
    model = make_model(folder / "m.rsmodel", bands=3, classes=2, base=8, depth=2, tile=128,
                       overlap=16)
    return folder, image, model


def _interrupted(argv, delay: float) -> subprocess.CompletedProcess:
    """Run ``python -m engine ARGV`` and send it SIGINT (Ctrl-C) after ``delay`` seconds."""
    proc = subprocess.Popen([sys.executable, "-m", "engine", *argv], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


# from the first imports (the interpreter's own start-up, before any of its code runs, is the
# one moment no program can answer) through torch's import and model loading to the run
@pytest.mark.parametrize("delay", [0.6, 1.5, 4.0])
def test_ctrl_c_is_cancelled_exit_130_without_traceback(files, delay):
    folder, image, model = files
    out = folder / "out.tif"
    argv = ["predict", "--model", str(model), "--input", str(image), "--output", str(out),
            "--device", "cpu", "--batch-size", "1"]
    r = _interrupted(argv, delay)
    if r.returncode == 0:
        pytest.skip(f"the run finished within {delay} s on this machine")
    assert r.returncode == 130, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "KeyboardInterrupt" not in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last == "cancelled: no output was written"
    assert sorted(p.name for p in folder.iterdir()) == ["image.tif", "m.rsmodel"]
    command = "python -m engine " + " ".join(argv) + " (Ctrl-C)"
    bad_input_table.check_row(CASE, bad_input_table.normalise(command, folder), r.returncode,
                              last)


# Ctrl-C delivered at one import, so these tests are not races: the script runs the command
# line with a hook that raises SIGINT when the first module named PREFIX… is looked up while
# the module INSIDE is loading ("-": at any time).
CTRL_C_AT_IMPORT = """
import os, runpy, signal, sys
sys.path.insert(0, os.getcwd())
prefix, inside = sys.argv[1:3]
class CtrlCAtImport:
    def find_spec(self, name, path, target=None):
        if name.startswith(prefix) and (inside == "-" or inside in sys.modules):
            sys.meta_path.remove(self)
            print("ctrl-c at", name, file=sys.stderr)
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:
                print("the Ctrl-C was raised into the import", file=sys.stderr)
                raise
        return None
sys.meta_path.insert(0, CtrlCAtImport())
sys.argv = ["engine", *sys.argv[3:]]
runpy.run_module("engine", run_name="__main__", alter_sys=True)
"""


def _predict_with_ctrl_c_at(prefix: str, inside: str, files,
                            tmp_path: Path) -> subprocess.CompletedProcess:
    _, image, model = files
    r = subprocess.run([sys.executable, "-c", CTRL_C_AT_IMPORT, prefix, inside, "predict",
                        "--model", str(model), "--input", str(image), "--output",
                        str(tmp_path / "out.tif"), "--device", "cpu"], cwd=ROOT, text=True, capture_output=True,
                       env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}, timeout=120)
    if "ctrl-c at" not in r.stderr:
        pytest.skip(f"no module {prefix}… was imported while {inside} loaded")
    return r


def _cancelled_cleanly(r: subprocess.CompletedProcess, tmp_path: Path) -> None:
    assert r.returncode == 130, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "raised into" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "cancelled: no output was written"
    assert not any(tmp_path.iterdir())


def test_ctrl_c_in_torch_start_up_ends_the_process_without_raising_into_it(files, tmp_path):
    # torch's start-up runs C++ that calls back into Python (``torch._C._c10d_init`` while
    # ``torch.distributed`` loads); a KeyboardInterrupt raised there made pybind11 abort the
    # process (exit -6) under load
    _cancelled_cleanly(_predict_with_ctrl_c_at("torch.distributed", "-", files, tmp_path),
                       tmp_path)


def test_ctrl_c_in_onnxruntime_import_cancels_rather_than_running_without_it(files, tmp_path):
    # onnxruntime's C++ imports numpy; a KeyboardInterrupt there was printed as a traceback and
    # became an ImportError, so predict went on through torch as if onnxruntime were missing
    _cancelled_cleanly(_predict_with_ctrl_c_at("numpy", "onnxruntime.capi._pybind_state", files,
                                               tmp_path), tmp_path)


def test_ctrl_c_once_the_output_is_written_exits_0_and_keeps_it(files, tmp_path):
    folder, image, model = files
    out = tmp_path / "done.tif"
    proc = subprocess.Popen([sys.executable, "-m", "engine", "predict", "--model", str(model),
                             "--input", str(image), "--output", str(out), "--device", "cpu"],
                            cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stdout:  # "wrote …" is printed once the output is complete
        if line.startswith("wrote"):
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (proc.returncode, err)
    assert out.exists() and "cancelled" not in err and "Traceback" not in err


def test_ctrl_c_after_the_epochs_says_the_model_is_kept_and_how_to_resume(tmp_path):
    # Ctrl-C at matplotlib's import comes once every epoch is done, while the curves are drawn:
    # the model file is complete, so "no output was written" would be untrue
    rng = np.random.default_rng(0)
    image = write_raster(tmp_path / "i.tif", rng.integers(0, 255, (3, 64, 64), np.uint8))
    labels = write_raster(tmp_path / "l.tif", rng.integers(1, 3, (1, 64, 64), np.uint8))
    out = tmp_path / "m.rsmodel"
    argv = ["train", "--image", str(image), "--labels", str(labels), "--out", str(out),
            "--epochs", "1", "--tile", "32", "--device", "cpu"]
    r = subprocess.run([sys.executable, "-c", CTRL_C_AT_IMPORT, "matplotlib", "-", *argv],
                       cwd=ROOT, text=True, capture_output=True,
                       env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}, timeout=300)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 130 and "Traceback" not in r.stderr, r.stderr
    assert last == (f"cancelled: {out} holds the best model of the finished epochs; 'train "
                    f"--resume {out}.last.ckpt' goes on from the last one")
    bad_input_table.check_row(TRAINING_CASE,
                              bad_input_table.normalise("python -m engine " + " ".join(argv)
                                                        + " (Ctrl-C)", tmp_path),
                              r.returncode, bad_input_table.normalise(last, tmp_path))
    assert read_card(out)["training"]["epochs"] == 1
    assert not (tmp_path / "m.curves.png").exists()
    done = subprocess.run([sys.executable, "-m", "engine", *argv, "--resume", f"{out}.last.ckpt"],
                          cwd=ROOT, text=True, capture_output=True,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m.curves.png").read_bytes()[:4] == b"\x89PNG"
