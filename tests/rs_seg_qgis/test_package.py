"""scripts/package.py builds a zip that installs like "Install from ZIP": unzipped into a fresh
profile's python/plugins, enabled, its algorithms are listed and run by qgis_process with only
the venv's site-packages on PYTHONPATH (the engine comes from inside the zip)."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile

import numpy as np
import pytest

from tests.conftest import ROOT, make_model, write_raster
from tests.rs_seg_qgis.profiles import fresh_profile

pytestmark = pytest.mark.qgis

QGIS_PROCESS = "/usr/bin/qgis_process.bin"
needs_qgis_process = pytest.mark.skipif(not os.path.exists(QGIS_PROCESS),
                                        reason="qgis_process.bin is not installed")


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "rs_seg_qgis.zip"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "package.py"), "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


@pytest.fixture(scope="module")
def installed(plugin_zip, tmp_path_factory):
    """A fresh profile with the zip unzipped into python/plugins and the plugin enabled;
    returns a qgis_process runner with the environment a user's machine would have."""
    home = tmp_path_factory.mktemp("install")
    _, _, env = fresh_profile(plugin_zip, home)
    # the venv's packages only (torch), not the repository: engine must come from the zip
    env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]

    def qgis_process(*args):
        r = subprocess.run([QGIS_PROCESS, *args], capture_output=True, text=True, timeout=180,
                           env=env, cwd=home)
        assert r.returncode == 0, r.stdout + r.stderr
        return r

    assert "rs_seg_qgis" in qgis_process("plugins", "enable", "rs_seg_qgis").stdout
    qgis_process.listing = qgis_process("list")
    return qgis_process


def test_zip_layout(plugin_zip):
    with zipfile.ZipFile(plugin_zip) as zf:
        names = zf.namelist()
    assert all(n.startswith("rs_seg_qgis/") for n in names)
    for needed in ("rs_seg_qgis/metadata.txt", "rs_seg_qgis/__init__.py",
                   "rs_seg_qgis/icon.svg", "rs_seg_qgis/plugin.py",
                   "rs_seg_qgis/processing/provider.py", "rs_seg_qgis/gui/dock.py",
                   "rs_seg_qgis/_vendor/engine/__init__.py",
                   "rs_seg_qgis/_vendor/engine/click/point.py",
                   "rs_seg_qgis/_vendor/engine/models/unet.py"):
        assert needed in names, needed
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")
                or "/tests/" in n]


@needs_qgis_process
def test_installed_zip_lists_and_runs_the_algorithms(installed, tmp_path):
    listing = installed.listing.stdout
    for alg in ("segment", "detect_change", "segment_point", "train_segmentation",
                "train_change", "evaluate", "vectorize"):
        assert f"rs_seg:{alg}" in listing, listing
    image = write_raster(tmp_path / "image.tif",
                         np.random.default_rng(0).integers(0, 255, (4, 48, 48), dtype=np.uint8))
    model = make_model(tmp_path / "unet.rsmodel", base=4, depth=2, tile=32, overlap=8)
    out = tmp_path / "classes.tif"
    r = installed("run", "rs_seg:segment", "--", f"INPUT={image}", f"MODEL={model}",
                  "DEVICE=cpu", f"OUTPUT={out}")
    assert out.is_file(), r.stdout + r.stderr


@needs_qgis_process
def test_installed_zip_leaves_qgis_processing_alone(installed):
    # the plugin folder itself must not be on sys.path: its 'processing' subpackage would
    # shadow QGIS's Processing plugin ("error starting plugin: processing")
    r = installed.listing
    assert "error starting plugin" not in r.stdout + r.stderr, r.stderr
