"""The analyst's own QGIS: system QGIS, the packaged zip in a fresh profile and no project venv.

The plugin loads and says what is missing; the installer, driven from QGIS's own Python,
installs into the profile's private folder; then qgis_process (a new QGIS start) sees it.
Offline by default (a stand-in safetensors wheel); ``RS_SEG_NETWORK_TESTS=1`` installs the real
onnxruntime (inference only) and segments with an ONNX model without torch;
``RS_SEG_INSTALL_TORCH_TEST=1`` installs the real torch CPU build with the machine's pip
configuration and segments a raster.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from tests.conftest import ROOT, make_model, write_raster
from tests.rs_seg_qgis.profiles import fresh_profile
from tests.rs_seg_qgis.wheels import make_wheel

QGIS_PROCESS = "/usr/bin/qgis_process.bin"
SYSTEM_PYTHON = "/usr/bin/python3"
pytestmark = [pytest.mark.qgis,
              pytest.mark.skipif(not os.path.exists(QGIS_PROCESS),
                                 reason="qgis_process.bin is not installed")]

# Runs in QGIS's own Python (Debian's /usr/bin/python3, no venv), as the dialog's task would.
DRIVER = """
import json, sys
sys.path.insert(0, {plugins!r})
from qgis.core import QgsApplication
app = QgsApplication([], False)
app.initQgis()
import rs_seg_qgis
from rs_seg_qgis.installer import choices, install, pip
from rs_seg_qgis.installer.task import private_root
choice = {choice}
result = install.install(choice, pip.PipOptions(wheel_folder={wheels!r}), private_root(),
                         progress=lambda f, t: print("PROGRESS", round(f, 2), t, flush=True))
print("RESULT", json.dumps({{"site": str(result.site), "packages": result.packages}}))
"""


@pytest.fixture()
def user_qgis(tmp_path):
    """A fresh profile with the zip unzipped and enabled; runners for qgis_process and QGIS's
    Python with the environment of a user's machine (no venv, no repository on the path)."""
    out = tmp_path / "rs_seg_qgis.zip"
    r = subprocess.run([SYSTEM_PYTHON, str(ROOT / "scripts" / "package.py"), "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    profile, plugins, env = fresh_profile(out, tmp_path)

    def qgis_process(*args, check=True):
        r = subprocess.run([QGIS_PROCESS, *args], capture_output=True, text=True, timeout=300,
                           env=env, cwd=tmp_path)
        assert r.returncode == 0 or not check, r.stdout + r.stderr
        return r

    def qgis_python(code, extra_env=None):
        r = subprocess.run([SYSTEM_PYTHON, "-c", code], capture_output=True, text=True,
                           timeout=600, env={**env, **(extra_env or {})}, cwd=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        return r

    assert "rs_seg_qgis" in qgis_process("plugins", "enable", "rs_seg_qgis").stdout
    qgis_process.plugins, qgis_process.profile = plugins, profile
    qgis_process.python = qgis_python
    return qgis_process


def _segment_error(qgis_process, tmp_path) -> str:
    r = qgis_process("run", "rs_seg:segment", "--", f"INPUT={tmp_path / 'none.tif'}",
                     f"MODEL={tmp_path / 'none.rsmodel'}", f"OUTPUT={tmp_path / 'o.tif'}",
                     check=False)
    return r.stdout + r.stderr


def _result(stdout: str) -> dict:
    line = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_plugin_says_what_is_missing_then_sees_the_private_folder(user_qgis, tmp_path):
    assert "rs_seg:segment" in user_qgis("list").stdout
    before = _segment_error(user_qgis, tmp_path)
    assert "RS Seg needs torch, safetensors" in before and "Install dependencies" in before
    # offline: a stand-in safetensors 0.8.0 from a wheel folder
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "safetensors", "0.8.0")
    choice = 'choices.Choice("st", "safetensors", ("safetensors==0.8.0",), imports=("safetensors",))'
    r = user_qgis.python(DRIVER.format(plugins=str(user_qgis.plugins), choice=choice,
                                       wheels=str(wheels)), {"PIP_CONFIG_FILE": os.devnull})
    result = _result(r.stdout)
    assert result["packages"] == [["safetensors", "0.8.0"]]
    assert result["site"].startswith(str(user_qgis.profile / "profiles" / "default" /
                                         "rs_seg_packages"))
    assert "PROGRESS 1.0" in r.stdout
    after = _segment_error(user_qgis, tmp_path)  # a new QGIS start puts the folder on sys.path
    assert "RS Seg needs torch in QGIS's Python" in after, after


def _pip_environment() -> dict:
    """The machine's pip settings (mirrors, proxy, certificates) as a user's QGIS would see them."""
    pip_env = {k: v for k, v in os.environ.items() if k.startswith("PIP_")}
    user_conf = os.path.expanduser("~/.config/pip/pip.conf")
    if os.path.isfile(user_conf) and "PIP_CONFIG_FILE" not in pip_env:
        pip_env["PIP_CONFIG_FILE"] = user_conf
    return pip_env


def _real_install(user_qgis, key: str) -> set:
    """Install the installer's choice ``key`` from the network; the names of what it installed."""
    r = user_qgis.python(DRIVER.format(plugins=str(user_qgis.plugins),
                                       choice=f'choices.by_key("{key}")', wheels=""),
                         _pip_environment())
    return {n.lower() for n, _ in _result(r.stdout)["packages"]}


def _segment_runs(user_qgis, tmp_path, model) -> None:
    """rs_seg:segment in the user's QGIS writes a class raster of the input's size."""
    import rasterio
    image = write_raster(tmp_path / "image.tif",
                         np.random.default_rng(0).integers(0, 255, (4, 96, 96), dtype=np.uint8))
    out = tmp_path / "classes.tif"
    run = user_qgis("run", "rs_seg:segment", "--", f"INPUT={image}", f"MODEL={model}",
                    "DEVICE=cpu", f"OUTPUT={out}")
    assert out.is_file(), run.stdout + run.stderr
    with rasterio.open(out) as ds:
        assert ds.shape == (96, 96) and set(np.unique(ds.read(1))) <= set(range(6))


@pytest.mark.skipif(os.environ.get("RS_SEG_INSTALL_TORCH_TEST") != "1",
                    reason="slow (installs torch CPU, ~1 GB): set RS_SEG_INSTALL_TORCH_TEST=1")
def test_real_torch_cpu_install_then_segment_runs(user_qgis, tmp_path):
    names = _real_install(user_qgis, "cpu")
    assert {"torch", "safetensors", "onnxruntime"} <= names and "numpy" not in names
    _segment_runs(user_qgis, tmp_path,
                  make_model(tmp_path / "unet.rsmodel", base=4, depth=2, tile=32, overlap=8))


@pytest.mark.skipif(os.environ.get("RS_SEG_NETWORK_TESTS") != "1",
                    reason="downloads onnxruntime (~20 MB): set RS_SEG_NETWORK_TESTS=1")
def test_real_inference_install_then_onnx_segment_runs_without_torch(user_qgis, tmp_path):
    from engine.formats.onnx.export import export_onnx
    names = _real_install(user_qgis, "inference")
    assert "onnxruntime" in names and not names & {"torch", "numpy"}
    model = make_model(tmp_path / "unet.rsmodel", base=4, depth=2, tile=32, overlap=8)
    _segment_runs(user_qgis, tmp_path, export_onnx(model, tmp_path / "unet.onnx")["output"])


@pytest.mark.skipif(shutil.which("xvfb-run") is None or shutil.which("qgis") is None,
                    reason="needs xvfb-run (apt-get install -y xvfb xauth) and desktop qgis")
def test_install_dialog_in_a_real_qgis_window(tmp_path):
    # offline stand-ins for onnxruntime and safetensors: the real download is the opt-in test
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "onnxruntime", "1.32.0", ["numpy>=1.21.6"])
    make_wheel(wheels, "safetensors", "0.8.0")
    shots = tmp_path / "shots"
    r = subprocess.run([SYSTEM_PYTHON, str(ROOT / "scripts" / "install_shot.py"), "--out",
                        str(shots), "--wheel-folder", str(wheels)],
                       capture_output=True, text=True, timeout=400,
                       env={**os.environ, "PIP_CONFIG_FILE": os.devnull})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "torch or onnxruntime is missing" in r.stdout  # the first-run prompt
    assert "Installed Inference only" in r.stdout and "onnxruntime 1.32.0" in r.stdout
    assert "dock install button visible False" in r.stdout  # nothing left to install
    from qgis.PyQt.QtGui import QImage
    for name in ("install_prompt", "install_dialog_ready", "install_dialog"):
        image = QImage(str(shots / f"{name}.png"))
        assert image.width() > 600 and image.height() > 400, name
        colours = {image.pixel(x, y) for x in range(0, image.width(), 9)
                   for y in range(0, image.height(), 9)}
        assert len(colours) > 20, name
