"""Headless runs through the qgis_process command line: an algorithm, a bad input, a saved model."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import rasterio
from osgeo import ogr

from tests.conftest import ROOT, make_model, write_raster

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """Run ``scripts/qgis-process ARGS`` with a fresh profile shared by this module's tests."""
    home = tmp_path_factory.mktemp("qgis-home")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home),
           "RS_SEG_QGIS_PROFILE": str(home / "profile")}

    def call(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(ROOT / "scripts" / "qgis-process"), *args],
                              capture_output=True, text=True, timeout=180, env=env)
    return call


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(11)
    image = write_raster(folder / "image.tif", rng.integers(0, 255, (4, 80, 72), dtype=np.uint8))
    model = make_model(folder / "unet.rsmodel", base=4, depth=2, tile=64, overlap=16)
    return folder, image, model


def test_segment_runs_headless(cli, inputs):
    folder, image, model = inputs
    out = folder / "classes.tif"
    r = cli("--json", "run", "rs_seg:segment", "--", f"INPUT={image}", f"MODEL={model}",
            "DEVICE=cpu", f"OUTPUT={out}")
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(r.stdout[r.stdout.index("{"):])
    assert result["results"]["OUTPUT"] == str(out)
    with rasterio.open(out) as ds:
        assert ds.shape == (80, 72) and "RS_SEG_CLASSES" in ds.tags(1)


def test_bad_input_fails_with_the_engine_message(cli, inputs):
    folder, _, model = inputs
    rgb = write_raster(folder / "rgb.tif", np.zeros((3, 32, 32), np.uint8))
    out = folder / "never.tif"
    r = cli("run", "rs_seg:segment", "--", f"INPUT={rgb}", f"MODEL={model}", f"OUTPUT={out}")
    assert r.returncode != 0
    assert "model expects 4 bands (R,G,B,NIR)" in r.stdout + r.stderr
    assert not out.exists()


def test_saved_model3_segment_then_vectorize(cli, inputs):
    folder, image, model = inputs
    classes, polygons = folder / "m_classes.tif", folder / "m_polygons.gpkg"
    r = cli("run", str(ROOT / "tests" / "data" / "segment_vectorize.model3"), "--",
            f"INPUT={image}", f"MODEL={model}", "MIN_AREA=0",
            f"segment:CLASSES={classes}", f"vectorize:POLYGONS={polygons}")
    assert r.returncode == 0, r.stdout + r.stderr
    with rasterio.open(classes) as ds:
        labels = ds.read(1)
    ds = ogr.Open(str(polygons))
    layer = ds.GetLayer(0)
    names = {f.GetField("class_name") for f in layer}
    area = sum(f.GetField("area_m2") for f in layer)
    assert layer.GetFeatureCount() >= len(np.unique(labels))
    assert area == pytest.approx(labels.size * 0.25) and all(names)


def _python_installs():
    """python3 of other installations (pyenv) whose version is QGIS's: the one that misleads it."""
    import glob
    import sys
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return sorted(glob.glob(f"/root/.pyenv/versions/{version}.*/bin/python3")
                  + glob.glob(f"/opt/conda/bin/python{version}"))


def test_qgis_python_is_used_whatever_python_comes_first_on_path(tmp_path, inputs):
    others = _python_installs()
    if not others:
        pytest.skip("no other installation of QGIS's Python version on this machine")
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "python3").symlink_to(others[0])
    env = {"PATH": f"{shadow}:/usr/bin:/bin", "HOME": str(tmp_path),
           "RS_SEG_QGIS_PROFILE": str(tmp_path / "profile"), "PYTHONHOME": str(shadow)}
    r = subprocess.run([str(ROOT / "scripts" / "qgis-process"), "list"], capture_output=True,
                       text=True, timeout=180, env=env)
    assert r.returncode == 0 and "SIP" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert "rs_seg:segment" in r.stdout
