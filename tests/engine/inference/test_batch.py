"""Many rasters in one call: engine.inference.batch.predict_many and ``predict --output-dir``."""
import numpy as np
import pytest
import rasterio

import engine.inference.batch
from engine.__main__ import main
from engine.inference.batch import collect_inputs, predict_many
from engine.inference.pipeline import predict
from engine.jobs import Cancelled, InputError, OutputError
from tests.conftest import make_model, write_raster


@pytest.fixture
def rasters(tmp_path, rng):
    folder = tmp_path / "in"
    folder.mkdir()
    return [write_raster(folder / f"r{i}.tif", rng.integers(0, 255, (3, 70 + 10 * i, 90),
                                                            dtype=np.uint8)) for i in range(3)]


@pytest.fixture
def model(tmp_path):
    return make_model(tmp_path / "m.rsmodel", arch="test-pointwise", bands=3, classes=4, tile=32,
                      overlap=8)


def test_three_rasters_equal_three_single_calls_byte_for_byte(tmp_path, rasters, model):
    result = predict_many(model, rasters, tmp_path / "many", probabilities="{stem}_p.tif",
                          device="cpu")
    assert [w["input"] for w in result["written"]] == [str(r) for r in rasters]
    assert result["failed"] == [] and result["skipped"] == []
    for r in rasters:
        single = tmp_path / f"single_{r.stem}.tif"
        predict(model, r, single, probabilities=tmp_path / f"single_{r.stem}_p.tif", device="cpu")
        assert (tmp_path / "many" / f"{r.stem}.tif").read_bytes() == single.read_bytes()
        assert (tmp_path / "many" / f"{r.stem}_p.tif").read_bytes() == \
            (tmp_path / f"single_{r.stem}_p.tif").read_bytes()


def test_model_loaded_once_and_one_progress_over_all_windows(tmp_path, rasters, model,
                                                             monkeypatch):
    calls = []
    real = engine.inference.batch.load_for_inference
    monkeypatch.setattr(engine.inference.batch, "load_for_inference",
                        lambda *a, **k: calls.append(a) or real(*a, **k))
    seen = []
    result = predict_many(model, rasters, tmp_path / "out", device="cpu",
                          progress=lambda f, m: seen.append(f) if f >= 0 else None)
    assert len(calls) == 1
    assert seen == sorted(seen) and seen[-1] == 1.0  # one bar: never goes back
    assert result["windows"] == sum(w["windows"] for w in result["written"])


def test_a_bad_file_is_reported_and_the_others_are_written(tmp_path, rasters, model, capsys):
    bad = rasters[0].parent / "r1b.tif"
    bad.write_text("not a raster")
    wrong = write_raster(rasters[0].parent / "r1c.tif", np.ones((5, 40, 40), np.uint8))
    inputs = [rasters[0], bad, wrong, rasters[1]]
    result = predict_many(model, inputs, tmp_path / "out", device="cpu")
    assert [f["input"] for f in result["failed"]] == [str(bad), str(wrong)]
    assert "not a raster GDAL can read" in result["failed"][0]["error"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["r0.tif", "r1.tif"]
    code = main(["predict", "--model", str(model), "--input", *map(str, inputs),
                 "--output-dir", str(tmp_path / "cli"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 3 and "2 of 4 files failed: r1b.tif: " in err
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == ["r0.tif", "r1.tif"]


def test_fail_fast_stops_at_the_first_failure(tmp_path, rasters, model):
    bad = rasters[0].parent / "bad.tif"
    bad.write_text("x")
    result = predict_many(model, [bad, *rasters], tmp_path / "out", device="cpu", fail_fast=True)
    assert len(result["failed"]) == 1 and result["written"] == []
    assert result["not_run"] == [str(r) for r in rasters]


def test_output_with_several_inputs_names_output_dir(tmp_path, rasters, model, capsys):
    code = main(["predict", "--model", str(model), "--input", *map(str, rasters[:2]),
                 "--output", str(tmp_path / "x.tif")])
    assert code == 2 and "--output-dir DIR" in capsys.readouterr().err
    assert not (tmp_path / "x.tif").exists()


def test_probabilities_must_be_a_pattern_with_several_inputs(tmp_path, rasters, model):
    with pytest.raises(InputError, match=r"\{stem\}_prob.tif"):
        predict_many(model, rasters, tmp_path / "out", probabilities="p.tif")


def test_existing_target_is_refused_before_any_work_or_skipped(tmp_path, rasters, model):
    out = tmp_path / "out"
    out.mkdir()
    (out / "r2.tif").write_bytes(b"old")
    with pytest.raises(OutputError, match="r2.tif already exists.*--skip-existing"):
        predict_many(model, rasters, out, device="cpu")
    assert sorted(p.name for p in out.iterdir()) == ["r2.tif"]  # nothing was written
    result = predict_many(model, rasters, out, device="cpu", skip_existing=True)
    assert result["skipped"] == [str(rasters[2])] and len(result["written"]) == 2
    assert (out / "r2.tif").read_bytes() == b"old"


def test_duplicate_stems_are_refused_up_front(tmp_path, rasters, model):
    other = tmp_path / "other"
    other.mkdir()
    twin = write_raster(other / "r0.tif", np.ones((3, 40, 40), np.uint8))
    with pytest.raises(OutputError, match="would both write"):
        predict_many(model, [rasters[0], twin], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_folder_and_input_list_forms(tmp_path, rasters, model):
    folder = rasters[0].parent
    (folder / "notes.txt").write_text("ignored")
    assert collect_inputs([folder]) == rasters
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two of them\n\n{rasters[2]}\nin/r0.tif  # relative to the list\n")
    assert collect_inputs((), listing) == [rasters[2], tmp_path / "in" / "r0.tif"]
    assert main(["predict", "--model", str(model), "--input", str(folder), "--output-dir",
                 str(tmp_path / "f"), "--output-name", "{stem}_cls.tif", "--device", "cpu"]) == 0
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == \
        ["r0_cls.tif", "r1_cls.tif", "r2_cls.tif"]
    assert main(["predict", "--model", str(model), "--input-list", str(listing), "--output-dir",
                 str(tmp_path / "l"), "--device", "cpu"]) == 0
    assert sorted(p.name for p in (tmp_path / "l").iterdir()) == ["r0.tif", "r2.tif"]


def test_single_input_and_output_still_works(tmp_path, rasters, model):
    assert main(["predict", "--model", str(model), "--input", str(rasters[0]), "--output",
                 str(tmp_path / "one.tif"), "--device", "cpu"]) == 0
    with rasterio.open(tmp_path / "one.tif") as ds:
        assert ds.shape == (70, 90)


def test_cancel_stops_the_batch_and_leaves_no_partial_file(tmp_path, rasters, model):
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 3
    out = tmp_path / "out"
    with pytest.raises(Cancelled):
        predict_many(model, rasters, out, device="cpu", cancelled=cancelled)
    leftovers = [p.name for p in out.iterdir()]
    assert all(not n.startswith(".") for n in leftovers) and len(leftovers) < 3
