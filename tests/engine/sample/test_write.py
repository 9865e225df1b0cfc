"""Tests of the sample scene's files (engine/sample/write.py): make_sample writes exactly the
rendered pixels, georeferenced and described, streams them, and cancels cleanly."""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp

from engine.jobs import Cancelled, InputError
from engine.sample import BANDS, CLASSES, make_sample, write
from engine.sample.render import render

NAMES = ("t1", "t2", "dsm", "labels", "labels_t2", "change")


def read_all(paths: Dict[str, Path]) -> Dict[str, np.ndarray]:
    out = {}
    for name in NAMES:
        with rasterio.open(paths[name]) as ds:
            out[name] = ds.read()
    return out


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """The 512² scene of seed 0: its paths and pixel arrays."""
    paths = make_sample(tmp_path_factory.mktemp("scene"), size=512, seed=0)
    return paths, read_all(paths)


def test_returns_all_six_files_and_leaves_no_temporaries(scene):
    paths, _ = scene
    assert set(paths) == set(NAMES)
    folder = paths["t1"].parent
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.tif" for n in NAMES)


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path):
    a = read_all(make_sample(tmp_path / "a", size=192, seed=7))
    b = read_all(make_sample(tmp_path / "b", size=192, seed=7))
    c = read_all(make_sample(tmp_path / "c", size=192, seed=8))
    for name in NAMES:
        assert a[name].dtype == b[name].dtype
        assert a[name].tobytes() == b[name].tobytes(), name
    for name in ("t1", "t2", "dsm", "labels"):
        assert not np.array_equal(a[name], c[name]), name


def test_file_content_equals_direct_render(scene):
    _, arr = scene
    direct = render(0, 0, 512, 0, 512)
    for name in NAMES:
        got = arr[name] if arr[name].shape[0] > 1 else arr[name][0]
        np.testing.assert_array_equal(got, direct[name], err_msg=name)


def test_strip_height_and_scene_size_do_not_change_pixels(tmp_path, monkeypatch):
    ref = read_all(make_sample(tmp_path / "ref", size=320, seed=11))
    monkeypatch.setattr(write, "STRIP_ROWS", 64)
    monkeypatch.setattr(write, "CHUNK_COLS", 128)
    small_strips = read_all(make_sample(tmp_path / "strips", size=320, seed=11))
    monkeypatch.undo()
    smaller = read_all(make_sample(tmp_path / "smaller", size=200, seed=11))
    for name in NAMES:
        np.testing.assert_array_equal(small_strips[name], ref[name], err_msg=name)
        np.testing.assert_array_equal(smaller[name], ref[name][:, :200, :200], err_msg=name)


def test_georeferencing_and_formats(scene):
    paths, _ = scene
    transforms = set()
    for name in NAMES:
        with rasterio.open(paths[name]) as ds:
            assert ds.driver == "GTiff"
            assert ds.crs.to_epsg() == 32633
            assert (ds.width, ds.height) == (512, 512)
            assert ds.res == (0.5, 0.5)
            assert ds.block_shapes[0] == (256, 256)
            assert ds.compression is not None and ds.compression.name.lower() == "deflate"
            transforms.add(tuple(ds.transform))
            if name in ("t1", "t2"):
                assert ds.count == 4 and ds.dtypes == ("uint8",) * 4
                assert list(ds.descriptions) == BANDS
                assert ds.colorinterp[3] != ColorInterp.alpha      # NIR is data, not a mask
                assert ds.dataset_mask().all()
            elif name == "dsm":
                assert ds.count == 1 and ds.dtypes == ("float32",)
            else:
                assert ds.count == 1 and ds.dtypes == ("uint8",)
    assert transforms == {(0.5, 0.0, 500000.0, 0.0, -0.5, 5000000.0, 0.0, 0.0, 1.0)}


def test_labels_carry_the_class_colour_table(scene):
    paths, _ = scene
    for name in ("labels", "labels_t2"):
        with rasterio.open(paths[name]) as ds:
            cmap = ds.colormap(1)
            for value, class_name, rgb in CLASSES:
                assert cmap[value][:3] == rgb
                assert ds.tags(1)[f"CLASS_{value}"] == class_name


def test_progress_is_reported_per_strip(tmp_path):
    calls = []
    make_sample(tmp_path, size=600, seed=1, progress=lambda f, m: calls.append((f, m)))
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    messages = [m for _, m in calls]
    assert "sample: rows 256/600" in messages and messages[-1] == "sample: rows 600/600"


@pytest.mark.parametrize("allowed_checks", [0, 1])
def test_cancel_raises_and_leaves_no_file(tmp_path, allowed_checks):
    checks = []

    def cancelled() -> bool:
        checks.append(1)
        return len(checks) > allowed_checks

    out = tmp_path / "out"
    with pytest.raises(Cancelled):
        make_sample(out, size=512, seed=0, cancelled=cancelled)
    assert len(checks) == allowed_checks + 1
    assert list(out.iterdir()) == []


def test_cancel_keeps_previous_outputs_untouched(tmp_path):
    make_sample(tmp_path, size=128, seed=0)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(Cancelled):
        make_sample(tmp_path, size=512, seed=1, cancelled=lambda: True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("size", [0, 10, 63, -5])
def test_too_small_size_is_an_input_error(tmp_path, size):
    with pytest.raises(InputError, match="size >= 64"):
        make_sample(tmp_path / "x", size=size)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("kwargs", [{"size": 256.0}, {"size": "256"}, {"size": True},
                                    {"seed": 1.5}, {"seed": "0"}, {"seed": None}])
def test_non_integer_arguments_are_input_errors(tmp_path, kwargs):
    with pytest.raises(InputError):
        make_sample(tmp_path, **kwargs)


def test_smallest_size_works(tmp_path):
    arr = read_all(make_sample(tmp_path, size=64, seed=2))
    assert arr["t1"].shape == (4, 64, 64) and arr["labels"].shape == (1, 64, 64)
    assert set(np.unique(arr["labels"])) <= {1, 2, 3, 4, 5, 6}
