"""The command line as a user runs it: exit codes, messages (not stack traces), outputs."""
import subprocess
import sys

import numpy as np
import rasterio

from tests.conftest import ROOT, write_raster


def engine(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_init_model_info_and_predict(tmp_path, rng):
    model = tmp_path / "m.rsmodel"
    r = engine("init-model", "--arch", "unet", "--bands", "3", "--classes", "4", "--out", model,
               "--class-names", "water,field,forest,town", "--tile", "64", "--overlap", "8")
    assert r.returncode == 0, r.stderr
    info = engine("info", model)
    assert info.returncode == 0
    assert "forest" in info.stdout and "3 bands (R, G, B)" in info.stdout
    img = write_raster(tmp_path / "in.tif", rng.integers(0, 255, (3, 90, 100), dtype=np.uint8))
    out = tmp_path / "out.tif"
    r = engine("predict", "--model", model, "--input", img, "--output", out, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "MPix/s" in r.stdout
    with rasterio.open(out) as o:
        assert set(np.unique(o.read(1))) <= {1, 2, 3, 4}
        assert o.tags(1)["CLASS_3"] == "forest"
    d4 = tmp_path / "d4.tif"
    r = engine("predict", "--model", model, "--input", img, "--output", d4, "--device", "cpu",
               "--tta", "d4")
    assert r.returncode == 0, r.stderr
    with rasterio.open(d4) as o:
        assert set(np.unique(o.read(1))) <= {1, 2, 3, 4}
    r = engine("predict", "--model", model, "--input", img, "--output", d4, "--tta", "d8")
    assert r.returncode == 2 and "invalid choice: 'd8'" in r.stderr
    # spelled as train, refine and places spell them
    same = tmp_path / "same.tif"
    r = engine("predict", "--model", model, "--image", img, "--out", same, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    with rasterio.open(out) as o, rasterio.open(same) as s:
        assert np.array_equal(o.read(1), s.read(1))


def test_errors_are_sentences_not_tracebacks(tmp_path, rng):
    model = tmp_path / "m.rsmodel"
    engine("init-model", "--bands", "4", "--classes", "6", "--out", model)
    img = write_raster(tmp_path / "in.tif", rng.integers(0, 255, (3, 64, 64), dtype=np.uint8))
    r = engine("predict", "--model", model, "--input", img, "--output", tmp_path / "o.tif")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "model expects 4 bands (R,G,B,NIR); the input has 3" in r.stderr
    r = engine("predict", "--model", model, "--input", img, "--output", tmp_path / "o.tif",
               "--device", "cuda")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = engine("info", tmp_path / "missing.rsmodel")
    assert r.returncode == 2 and "does not exist" in r.stderr
    assert not (tmp_path / "o.tif").exists()
