"""``engine export --quantize int8``: calibrated on a raster (or the card's training rasters),
class agreement with fp32 measured and written into the card, refused below the bar."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from engine.__main__ import main
from engine.formats.modelfile import load_model, read_card, save_model
from engine.formats.onnx import runtime_graph
from engine.formats.onnx.quantize import calibration_rasters, export_int8
from engine.inference.pipeline import predict
from engine.jobs import InputError, ModelFileError
from tests.conftest import make_model, write_raster


@pytest.fixture
def raster(tmp_path):
    rng = np.random.default_rng(8)
    return write_raster(tmp_path / "cal.tif", rng.integers(1, 255, (4, 160, 160), np.uint8))


def _classes(path):
    with rasterio.open(path) as ds:
        return ds.read(1)


def test_int8_is_calibrated_recorded_and_runs(tmp_path, raster):
    model = make_model(tmp_path / "m.rsmodel", arch="test-pointwise", bands=4, classes=5)
    record = export_int8(model, raster, windows=4)
    assert 0.99 <= record["agreement"] <= 1.0 and record["windows"] == 4
    card = read_card(model)
    assert card["quantization"]["int8"]["agreement"] == record["agreement"]
    assert card["quantization"]["int8"]["calibration"] == [str(raster.resolve())]
    int8 = runtime_graph.cached_path(load_model(model), "int8")
    assert int8.is_file() and str(int8) == record["graph"]  # the card record keeps the key
    assert runtime_graph.cached_path(load_model(model), "fp32").is_file()
    predict(model, raster, tmp_path / "fp32.tif", device="cpu")
    result = predict(model, raster, tmp_path / "int8.tif", device="cpu", precision="int8")
    assert result["backend"] == "onnxruntime"
    same = np.mean(_classes(tmp_path / "fp32.tif") == _classes(tmp_path / "int8.tif"))
    assert same >= 0.98


def test_below_the_bar_is_refused_and_nothing_is_written(tmp_path, raster, monkeypatch):
    monkeypatch.setenv("RS_SEG_CACHE", str(tmp_path / "cache"))  # no graph of an earlier test
    model = make_model(tmp_path / "m.rsmodel", arch="test-pointwise", bands=4, classes=5)
    before = model.read_bytes()
    with pytest.raises(ModelFileError, match=r"int8 refused: .* % of the calibration pixels"):
        export_int8(model, raster, windows=2, min_agreement=1.01)
    assert model.read_bytes() == before
    assert not runtime_graph.cached_path(load_model(model), "int8").exists()


def test_calibration_defaults_to_the_training_rasters(tmp_path, raster):
    model = make_model(tmp_path / "m.rsmodel", arch="test-pointwise", bands=4, classes=5)
    lm = load_model(model)
    with pytest.raises(InputError, match="--calibration RASTER"):
        calibration_rasters(lm.card, None)
    card = dict(lm.card, training={"data": [{"image": str(raster), "labels": "x.tif"},
                                            {"image": str(tmp_path / "gone.tif")}]})
    save_model(model, card, lm.network)
    assert calibration_rasters(read_card(model), None) == [raster]
    with pytest.raises(InputError, match="does not exist"):
        calibration_rasters(card, tmp_path / "missing.tif")


def test_cli_quantize(tmp_path, raster, capsys):
    model = make_model(tmp_path / "m.rsmodel", arch="test-pointwise", bands=4, classes=5)
    assert main(["export", "--model", str(model), "--quantize", "int8", "--calibration",
                 str(raster), "--calibration-windows", "2"]) == 0
    assert "class agreement with fp32" in capsys.readouterr().out
    assert main(["export", "--model", str(model), "--quantize", "int8", "--output",
                 str(tmp_path / "x.onnx")]) == 2
    assert "leave out --output" in capsys.readouterr().err
    assert main(["export", "--model", str(model)]) == 2
    assert "--output FILE.onnx" in capsys.readouterr().err
    assert json.loads(json.dumps(read_card(model)["quantization"]))["int8"]["windows"] == 2
