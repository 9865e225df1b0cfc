"""The model definition beside a model: schema check, round trip, ``describe``, and what it
changes in a run (bands, normalisation, classes), for .onnx and .rsmodel files alike."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch

from engine.__main__ import main
from engine.formats.definition import (Definition, definition_path, parse_definition,
                                       read_definition, write_definition)
from engine.formats.describe import describe_model
from engine.formats.modelfile import read_card
from engine.formats.overrides import definition_of, load_defined
from engine.inference.pipeline import predict
from engine.jobs import InputError, ModelFileError
from tests.conftest import write_raster

from .onnx.conftest import Head, export

FULL = {"rs_seg_definition": 1, "name": "cloud mask", "bands": ["B02", "B03", "B04"],
        "input_scale": 10000, "mean": [0.2, 0.25, 0.3], "std": [0.1, 0.12, 0.15],
        "nodata": 0, "classes": ["clear", {"name": "cloud", "color": [255, 255, 255]},
                                 {"value": 2, "name": "shadow", "color": [40, 40, 40]}],
        "activation": "logits", "threshold": 0.4, "tile": 64, "overlap": 8, "gsd_m": 10,
        "output": 0, "outputs": [{"layer": "clouds"}]}


def test_round_trip_and_schema(tmp_path):
    d = parse_definition(FULL)
    model = tmp_path / "m.onnx"
    path = write_definition(model, d)
    assert path == tmp_path / "m.onnx.json" == definition_path(model)
    back = read_definition(model)
    assert back == d and json.loads(path.read_text()) == back.as_dict()
    assert back.classes[1] == {"value": 1, "name": "cloud", "color": [255, 255, 255]}
    assert read_definition(tmp_path / "other.onnx") is None
    for bad, words in (({"bandz": ["a"]}, "unknown key.*bandz"),
                       ({"tile": "big"}, "'tile' must be a number"),
                       ({"threshold": 2}, "'threshold' is a probability"),
                       ({"mean": [1, 2]}, "give 'mean' and 'std' together"),
                       ({"mean": [1, 2], "std": [1, 2, 3]}, "per-band lists differ"),
                       ({"activation": "relu"}, "'activation' must be one of"),
                       ({"rs_seg_definition": 7}, "reads version 1")):
        with pytest.raises(ModelFileError, match=words):
            parse_definition(bad, "x.json")
    (tmp_path / "broken.onnx.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="broken.onnx.json is not valid JSON"):
        read_definition(tmp_path / "broken.onnx")


def reflectance(tmp_path, described: bool):
    """A 3-band float 0–1 'reflectance' raster, bands stored B04, B03, B02 (red first)."""
    rng = np.random.default_rng(5)
    data = rng.random((3, 96, 80)).astype(np.float32) * 0.5
    path = write_raster(tmp_path / f"refl_{described}.tif", data)
    if described:
        with rasterio.open(path, "r+") as ds:
            for i, name in enumerate(["B04", "B03", "B02"], start=1):
                ds.set_band_description(i, name)
    return path, data


def test_definition_drives_an_onnx_run(tmp_path):
    head = Head(channels=3, activation="none")
    model = export(head, tmp_path / "bare.onnx", dynamic_size=True)
    raster, data = reflectance(tmp_path, described=True)
    # before: the model reads 0–255 by default and the reflectance is refused with the fix
    with pytest.raises(InputError, match="give --input-scale 1"):
        predict(model, raster, tmp_path / "x.tif", gsd="native")
    result = describe_model(model, settings=[
        "bands=B02,B03,B04", "input_scale=1", "mean=0.2,0.25,0.3", "std=0.1,0.12,0.15",
        "classes=clear,cloud,shadow", "tile=64", "overlap=0"], write=True)
    assert result["written"] and (tmp_path / "bare.onnx.json").is_file()
    card = read_card(model)
    assert card["tile_size"] == 64 and card["definition"]["bands"] == ["B02", "B03", "B04"]
    assert [c["name"] for c in card["classes"]] == ["clear", "cloud", "shadow"]
    out = tmp_path / "classes.tif"
    summary = predict(model, raster, out, gsd="native")
    assert any("B02 ← band 3" in n for n in summary["notes"])
    x = (torch.from_numpy(data[::-1].copy())[None] - torch.tensor([0.2, 0.25, 0.3])[:, None, None]) \
        / torch.tensor([0.1, 0.12, 0.15])[:, None, None]
    with torch.no_grad(), rasterio.open(out) as ds:
        assert np.array_equal(ds.read(1), head(x)[0].argmax(0).numpy())
        assert ds.tags(1)["CLASS_2"] == "shadow"


def test_describe_imports_a_training_json_and_edits(tmp_path, capsys):
    model = export(Head(bands=3, channels=3, activation="none"), tmp_path / "m.onnx",
                   dynamic_size=True)
    training = tmp_path / "model_3b.json"
    training.write_text(json.dumps({"data": {"in_channels": 3, "classes": 3,
        "dataset_statistics": {"img": [[0.2, 0.3, 0.4], [0.1, 0.2, 0.3]],
                               "band_names": ["blue", "green", "red"]},
        "target_size": [64, 64]}}))
    assert main(["describe", str(model), "--from-json", str(training), "--set",
                 "input_scale=10000", "--set", "classes=clear,cloud,shadow"]) == 0
    printed = capsys.readouterr().out
    assert '"input_scale": 10000' in printed and "not written" in printed
    assert not definition_path(model).exists()
    assert main(["describe", str(model), "--from-json", str(training), "--set",
                 "input_scale=10000", "--write"]) == 0
    d = read_definition(model)
    assert d.bands == ["blue", "green", "red"] and d.mean == [0.2, 0.3, 0.4] and d.tile == 64
    card = read_card(model)
    assert card["inputs"]["image"]["mean"] == pytest.approx([2000, 3000, 4000])
    assert card["inputs"]["image"]["std"] == pytest.approx([1000, 2000, 3000])
    # edits keep what is there; a definition that does not fit the model is refused unwritten
    assert main(["describe", str(model), "--set", "threshold=0.6", "--write"]) == 0
    assert read_definition(model).threshold == 0.6 and read_definition(model).tile == 64
    assert main(["describe", str(model), "--set", "classes=a,b", "--write"]) == 2
    assert "2 class names were given but m.onnx predicts 3" in capsys.readouterr().err
    assert read_definition(model).classes is None


def test_rsmodel_with_a_definition_and_overrides(tmp_path):
    model = tmp_path / "m.rsmodel"
    assert main(["init-model", "--bands", "3", "--classes", "2", "--out", str(model),
                 "--tile", "64", "--overlap", "16"]) == 0
    write_definition(model, Definition(classes=["soil", "water"], input_scale=1.0))
    lm = load_defined(model)
    assert [c["name"] for c in lm.card["classes"]] == ["soil", "water"]
    # the 8-bit statistics (127.5 ± 63.75) read at pixel 1 = 1.0 instead of 255
    assert lm.card["inputs"]["image"]["mean"] == pytest.approx([0.5] * 3)
    mean = load_defined(model, "cpu", definition_of(mean=[0.4], std=[0.2], input_scale=1))
    assert mean.card["inputs"]["image"]["std"] == pytest.approx([0.2] * 3)
    with pytest.raises(InputError, match="activation and output apply to ONNX models"):
        load_defined(model, "cpu", definition_of(activation="sigmoid"))
    with pytest.raises(InputError, match="mean has 2 values but the model reads 3 bands"):
        load_defined(model, "cpu", definition_of(mean=[1, 2], std=[1, 2]))


def test_per_output_layers_and_classes(tmp_path):
    model = export(Head(channels=3, two_outputs=True), tmp_path / "two.onnx",
                   outputs=("landcover", "confidence"))
    write_definition(model, parse_definition({"outputs": [
        {"layer": "cover", "classes": ["soil", "crop", "water"]},
        {"layer": "sure", "classes": ["unsure", "sure"]}]}))
    first = load_defined(model)
    assert [c["name"] for c in first.card["classes"]] == ["soil", "crop", "water"]
    second = load_defined(model, "cpu", definition_of(output="confidence"))
    assert second.card["onnx"]["output"] == "confidence"
    assert [c["name"] for c in second.card["classes"]] == ["unsure", "sure"]
    from engine.formats.outputs import output_names
    assert output_names(second) == ["cover", "sure"]
    with pytest.raises(InputError, match="two.onnx has no output named 'x'.*landcover, "
                                         "confidence"):
        load_defined(model, "cpu", definition_of(output="x"))
