"""Inference sharded over torchrun ranks: the bands partition the raster, each band stitches to
exactly the single-process rows, and a torchrun job's output equals a single process's."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.inference.pipeline import sharded
from engine.inference.pipeline import Source, run_sliding_window
from engine.io.rasters import WindowReader
from engine.jobs import Job
from engine.inference.tiling import Grid, check_tiling
from tests.conftest import ROOT, make_model, write_raster

TORCHRUN = Path(sys.executable).with_name("torchrun")


@st.composite
def grids(draw):
    tile = draw(st.integers(16, 96))
    overlap = draw(st.integers(0, (tile - 1) // 2))
    check_tiling(tile, overlap)
    return Grid(draw(st.integers(1, 300)), draw(st.integers(1, 700)), tile, overlap)


@settings(max_examples=200, deadline=None)
@given(grids(), st.integers(1, 12))
def test_bands_partition_the_rows_and_start_where_their_windows_do(grid, size):
    shards = [sharded.plan(grid, r, size) for r in range(size)]
    assert shards[0].y0 == 0 and shards[-1].y1 == grid.height
    for a, b in zip(shards, shards[1:]):
        assert a.y1 == b.y0 and a.end == b.start
    ys = grid.ys
    for s in shards:
        # every window reaching into the band is computed by this rank
        assert all(i >= s.first for i, y in enumerate(ys) if y < s.y1 and y + grid.tile > s.y0)


def _rows(grid, reader, rows=None, keep=None):
    """Rows a (pointwise) run hands on: ``{y: array}``."""
    got = {}

    def on_rows(y, arrays):
        got[y] = arrays[0]

    def forward(inputs):  # pointwise: any window split gives the same scores
        x = inputs["image"]
        return torch.cat([torch.sigmoid(x[:, :1] * 0.7), torch.tanh(x[:, 1:2]) ** 2], 1)

    run_sliding_window(forward, [Source("image", reader, [100.0] * 3, [50.0] * 3)], grid, 2,
                       torch.device("cpu"), 3, lambda b: [b.scores.numpy().copy()],
                       keep(on_rows) if keep else on_rows, Job(), rows=rows)
    return got


@pytest.mark.parametrize("size", [2, 3, 7])
def test_each_band_stitches_to_the_single_process_rows(tmp_path, rng, size):
    img = write_raster(tmp_path / "in.tif", rng.integers(0, 255, (3, 170, 90), dtype=np.uint8))
    grid = Grid(90, 170, 48, 16)
    with rasterio.open(img) as ds:
        reader = WindowReader(ds, [1, 2, 3])
        whole = np.concatenate([a for _, a in sorted(_rows(grid, reader).items())], axis=1)
        parts = []
        for rank in range(size):
            s = sharded.plan(grid, rank, size)
            got = _rows(grid, reader, s.rows, s.keep)
            band = np.concatenate([a for _, a in sorted(got.items())], axis=1) if got else \
                np.zeros((2, 0, 90), np.float32)
            assert band.shape[1] == s.y1 - s.y0
            parts.append(band)
    assert np.array_equal(np.concatenate(parts, axis=1), whole)  # bit for bit


def _engine(args, ranks=None, extra_env=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(extra_env or {})}
    cmd = ([str(TORCHRUN), "--standalone", f"--nproc_per_node={ranks}", "-m", "engine"]
           if ranks else [sys.executable, "-m", "engine"])
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=ROOT)


def _same_rasters(a, b):
    with rasterio.open(a) as x, rasterio.open(b) as y:
        assert x.profile == y.profile and x.tags(1) == y.tags(1)
        assert np.array_equal(x.read(), y.read())
        if x.count == 1 and x.dtypes[0] == "uint8":
            assert x.colormap(1) == y.colormap(1)


needs_torchrun = pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed")


@needs_torchrun
@pytest.mark.parametrize("ranks,size", [(2, 200), (3, 60)])  # 60 px: fewer window rows than ranks
def test_torchrun_predict_equals_one_process(tmp_path, rng, ranks, size):
    img = write_raster(tmp_path / "in.tif", rng.integers(0, 255, (4, size, 150), dtype=np.uint8))
    model = make_model(tmp_path / "m.rsmodel", base=4, depth=2, tile=48, overlap=16)
    common = ["predict", "--model", model, "--input", img, "--device", "cpu", "--batch-size", 3]
    one = _engine(common + ["--output", tmp_path / "one.tif", "--probabilities",
                            tmp_path / "p1.tif"])
    assert one.returncode == 0, one.stderr
    many = _engine(common + ["--output", tmp_path / "many.tif", "--probabilities",
                             tmp_path / "p2.tif"], ranks=ranks)
    assert many.returncode == 0, many.stderr
    _same_rasters(tmp_path / "one.tif", tmp_path / "many.tif")
    _same_rasters(tmp_path / "p1.tif", tmp_path / "p2.tif")
    assert many.stdout.count("wrote") == 1  # rank 0 alone reports
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        ["in.tif", "m.rsmodel", "many.tif", "one.tif", "p1.tif", "p2.tif"]  # no part files left


@needs_torchrun
def test_torchrun_change_equals_one_process(tmp_path, rng):
    t1 = rng.integers(0, 255, (3, 160, 120), dtype=np.uint8)
    t2 = t1.copy()
    t2[:, 40:90, 30:80] = 250
    a, b = write_raster(tmp_path / "t1.tif", t1), write_raster(tmp_path / "t2.tif", t2)
    model = make_model(tmp_path / "cd.rsmodel", arch="fcsiamdiff", bands=3, classes=2, base=4,
                       depth=2, tile=48, overlap=16)
    common = ["change", "--model", model, "--t1", a, "--t2", b, "--device", "cpu",
              "--batch-size", 2, "--threshold", 0.4]
    one = _engine(common + ["--output", tmp_path / "one.tif"])
    assert one.returncode == 0, one.stderr
    many = _engine(common + ["--output", tmp_path / "many.tif"], ranks=2)
    assert many.returncode == 0, many.stderr
    _same_rasters(tmp_path / "one.tif", tmp_path / "many.tif")


@needs_torchrun
def test_a_failing_rank_fails_the_job_and_leaves_no_output(tmp_path, rng):
    img = write_raster(tmp_path / "in.tif", rng.integers(0, 255, (4, 200, 100), dtype=np.uint8))
    model = make_model(tmp_path / "m.rsmodel", base=4, depth=2, tile=48, overlap=16)
    hook = tmp_path / "hook"
    hook.mkdir()
    # rank 1's reader fails part-way, as a bad disk block or a dropped network share would
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('RANK') == '1':\n"
        "    import engine.io.rasters as r\n"
        "    read = r.WindowReader.read\n"
        "    def failing(self, x, y, tile):\n"
        "        if y > 0:\n"
        "            raise OSError('read error in block (simulated)')\n"
        "        return read(self, x, y, tile)\n"
        "    r.WindowReader.read = failing\n")
    out = tmp_path / "out" / "classes.tif"
    out.parent.mkdir()
    r = _engine(["predict", "--model", model, "--input", img, "--output", out, "--device", "cpu"],
                ranks=2, extra_env={"PYTHONPATH": f"{hook}{os.pathsep}{ROOT}"})
    assert r.returncode != 0
    assert "rank 1: read error in block (simulated)" in r.stderr
    assert list(out.parent.iterdir()) == []


@needs_torchrun
def test_torchrun_spreads_many_inputs_over_the_ranks(tmp_path, rng):
    images = [write_raster(tmp_path / f"in{i}.tif",
                           rng.integers(0, 255, (4, 70, 60), dtype=np.uint8)) for i in range(3)]
    model = make_model(tmp_path / "m.rsmodel", base=4, depth=2, tile=48, overlap=16)
    common = ["predict", "--model", model, "--input", *images, "--device", "cpu"]
    one = _engine(common + ["--output-dir", tmp_path / "one"])
    assert one.returncode == 0, one.stderr
    many = _engine(common + ["--output-dir", tmp_path / "many", "--format", "cog"], ranks=2)
    assert many.returncode == 0, many.stderr
    for i in range(3):
        with rasterio.open(tmp_path / "one" / f"in{i}.tif") as a, \
                rasterio.open(tmp_path / "many" / f"in{i}.tif") as b:
            assert np.array_equal(a.read(), b.read())
            assert b.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == \
        ["in0.tif", "in1.tif", "in2.tif"]
