"""ONNX models as first-class models: cards from Deepness metadata or graph shapes, every output
form through the one sliding-window pipeline, and the sentences for models RS Seg cannot run."""
from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest
import rasterio
import torch
from onnx import TensorProto, helper
from rasterio.windows import Window

from engine.inference.pipeline import predict
from engine.jobs import InputError, Job, ModelFileError
from engine.formats.modelfile import load_model, read_card
from engine.formats.onnx.model import OnnxModel, load_onnx
from engine.compute.onnx_runtime import MissingPackageError, onnxruntime
from engine.click.point import _predict_window
from engine.inference.views import ViewOptions
from tests.conftest import write_raster

from .conftest import Classifier, Detector, Head, deepness, export


def window_probabilities(model, raster):
    """Stitched float probabilities of the whole raster through the pipeline (C×H×W)."""
    lm = model if isinstance(model, OnnxModel) else load_model(model)
    with rasterio.open(raster) as ds:
        pred = _predict_window(lm, ds, Window(0, 0, ds.width, ds.height), torch.device("cpu"),
                               Job(), ViewOptions(gsd="native"))
    return pred.probabilities


def pixels(raster) -> np.ndarray:
    with rasterio.open(raster) as ds:
        return ds.read().astype(np.float32)


def classes_of(raster) -> np.ndarray:
    with rasterio.open(raster) as ds:
        return ds.read(1)


def test_deepness_softmax_model_card_and_prediction(tmp_path, rgb):
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    head = Head(channels=3)
    path = export(head, tmp_path / "landcover.onnx", dynamic_size=True, metadata=deepness(
        ["background", "building", "water"], resolution=50, tiles_size=64, tiles_overlap=25,
        standardization_mean=mean, standardization_std=std))
    card = read_card(path)
    assert card["task"] == "segmentation" and card["architecture"] == "onnx"
    assert [(c["value"], c["name"]) for c in card["classes"]] == \
        [(0, "background"), (1, "building"), (2, "water")]
    assert (card["tile_size"], card["overlap"], card["gsd_m"]) == (64, 16, 0.5)
    assert card["inputs"]["image"]["mean"] == pytest.approx([m * 255 for m in mean])
    assert card["onnx"]["source"] == "deepness" and card["onnx"]["activation"] == "none"
    predict(path, rgb, tmp_path / "classes.tif", gsd="native")
    x = (torch.from_numpy(pixels(rgb))[None] / 255 - torch.tensor(mean)[:, None, None]) \
        / torch.tensor(std)[:, None, None]
    # Deepness's rule at its default threshold 0.5: probabilities below it count as 0, then the
    # winning class (all zero: class 0)
    p = head(x)[0].detach().numpy()
    expected = np.where(p >= 0.5, p, 0).argmax(0)
    assert (expected == 0).mean() > (p.argmax(0) == 0).mean()  # the threshold matters here
    assert np.array_equal(classes_of(tmp_path / "classes.tif"), expected)


@pytest.mark.parametrize("squeeze", [False, True])
def test_sigmoid_binary_fixed_batch_one_and_threshold(tmp_path, rgb, squeeze):
    head = Head(channels=1, activation="sigmoid", squeeze=squeeze)
    plain = export(head, tmp_path / "plain.onnx", batch=1, metadata=deepness(["building"]))
    strict = export(head, tmp_path / "strict.onnx", batch=1,
                    metadata=deepness(["building"], seg_thresh=0.7))
    card = read_card(plain)
    assert [c["name"] for c in card["classes"]] == ["background", "building"]
    assert card["onnx"]["binary"] and card["onnx"]["batch"] == 1 and card["tile_size"] == 64
    p = head(torch.from_numpy(pixels(rgb))[None] / 255)
    p = (p if squeeze else p[:, 0])[0].detach().numpy()
    for model, cut in ((plain, 0.5), (strict, 0.7)):
        out = tmp_path / f"{model.stem}.tif"
        predict(model, rgb, out, batch_size=3, gsd="native")  # 3 windows per batch, graph takes 1
        assert np.array_equal(classes_of(out), (p >= cut).astype(np.uint8))
    probs = window_probabilities(plain, rgb)
    assert np.abs(probs[1] - p).max() <= 1e-5 and np.abs(probs.sum(0) - 1).max() <= 1e-5


def test_two_outputs_uses_the_first(tmp_path, rgb):
    head = Head(channels=3, two_outputs=True)
    path = export(head, tmp_path / "two.onnx", outputs=("classes", "confidence"),
                  metadata=deepness(["a", "b", "c"]))
    card = read_card(path)
    assert card["onnx"]["output"] == "classes" and card["onnx"]["outputs"] == \
        ["classes", "confidence"]
    probs = window_probabilities(path, rgb)
    expected = head(torch.from_numpy(pixels(rgb))[None] / 255)[0][0].detach().numpy()
    assert np.abs(probs - expected).max() <= 1e-5


def test_output_smaller_than_input_is_a_centred_crop(tmp_path, rgb):
    head = Head(channels=3, crop=7)           # 64 → 50: valid 15×15 convolution
    path = export(head, tmp_path / "crop.onnx", batch=1, metadata=deepness(["a", "b", "c"]))
    model = load_onnx(path)
    assert model.card["onnx"]["margin"] == 7 and model.card["overlap"] >= 14
    probs = window_probabilities(model, rgb)
    whole = head(torch.from_numpy(pixels(rgb))[None] / 255)[0].detach().numpy()
    # every pixel a window centre reaches matches the whole-image (valid) convolution
    assert np.abs(probs[:, 7:-7, 7:-7] - whole).max() <= 1e-4
    assert np.isfinite(probs).all() and np.abs(probs.sum(0) - 1).max() <= 1e-4
    with pytest.raises(InputError, match=r"overlap \(8\) must be at least twice the 7 pixels"):
        predict(model, rgb, tmp_path / "x.tif", overlap=8)


def test_bare_logits_model_gets_softmax_and_user_classes(tmp_path, rgb):
    head = Head(channels=3, activation="none")
    path = export(head, tmp_path / "bare.onnx", dynamic_size=True)
    card = read_card(path)
    assert card["onnx"]["source"] == "graph" and card["onnx"]["activation"] == "softmax"
    assert [c["name"] for c in card["classes"]] == ["class 0", "class 1", "class 2"]
    assert card["tile_size"] == 512  # dynamic graph, no metadata: the default window
    named = load_onnx(path, classes=["soil", "crop", "water"], tile=96, input_scale=1000)
    assert [c["name"] for c in named.card["classes"]] == ["soil", "crop", "water"]
    assert named.card["tile_size"] == 96 and named.card["inputs"]["image"]["std"] == [1000.0] * 3
    probs = window_probabilities(named, rgb)
    logits = head(torch.from_numpy(pixels(rgb))[None] / 1000)
    assert np.abs(probs - torch.softmax(logits, 1)[0].detach().numpy()).max() <= 1e-5
    with pytest.raises(InputError, match="2 class names were given but bare.onnx predicts 3"):
        load_onnx(path, classes=["a", "b"])


@pytest.mark.parametrize("module, kind", [
    (Classifier(), "is an image classifier"),
    (Detector(), "is an object detector"),
])
def test_non_segmentation_graphs_are_named(tmp_path, module, kind):
    path = export(module, tmp_path / "other.onnx")
    with pytest.raises(ModelFileError, match=kind):
        load_model(path)


def test_deepness_model_type_and_regression_are_named(tmp_path, rgb):
    detector = export(Head(channels=3), tmp_path / "det.onnx",
                      metadata={"model_type": "Detector", "class_names": {0: "car"}})
    with pytest.raises(ModelFileError, match=r"an object detector \(Deepness model_type "
                                             r"'Detector'\)"):
        predict(detector, rgb, tmp_path / "x.tif")
    regression = export(Head(channels=1, activation="none"), tmp_path / "dsm.onnx")
    with pytest.raises(ModelFileError, match="regression model .* --classes background,"):
        load_model(regression)
    binary = load_onnx(regression, classes=["ground", "tree"])
    assert binary.card["onnx"]["activation"] == "sigmoid" and binary.card["onnx"]["binary"]
    # one channel already in 0..1 (no Sigmoid node, no metadata): a probe run shows it
    clamped = read_card(export(Head(channels=1, activation="clamp"), tmp_path / "mask.onnx"))
    assert clamped["onnx"]["activation"] == "none" and clamped["onnx"]["binary"]
    assert [c["name"] for c in clamped["classes"]] == ["background", "foreground"]


def test_band_mismatch_is_the_usual_sentence(tmp_path):
    path = export(Head(channels=2), tmp_path / "rgb_model.onnx", metadata=deepness(["a", "b"]))
    four = write_raster(tmp_path / "four.tif", np.zeros((4, 70, 70), np.uint8) + 9)
    five = write_raster(tmp_path / "five.tif", np.zeros((5, 70, 70), np.uint8) + 9)
    with pytest.raises(InputError, match=r"model expects 3 bands \(R,G,B\); the input has 5"):
        predict(path, five, tmp_path / "x.tif")
    predict(path, four, tmp_path / "y.tif", bands=[1, 2, 3])
    assert classes_of(tmp_path / "y.tif").shape == (70, 70)


def test_corrupt_and_custom_operator_files_are_refused(tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage that is not a protobuf model" * 10)
    with pytest.raises(ModelFileError, match="corrupt.onnx is not a (readable|usable) ONNX model"):
        read_card(corrupt)
    node = helper.make_node("FancyOp", ["input"], ["out"], domain="com.example.ops")
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                             [1, 3, 64, 64])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT,
                                                             [1, 2, 64, 64])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example.ops", 1)])
    onnx.save(model, str(tmp_path / "custom.onnx"))
    with pytest.raises(ModelFileError, match=r"custom operators \(domain com.example.ops\) .* "
                                             r"never loads those"):
        load_model(tmp_path / "custom.onnx")


def test_missing_onnxruntime_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(MissingPackageError, match=r"-m pip install onnxruntime==1\.32\.0"):
        onnxruntime()
    path = export(Head(), tmp_path / "m.onnx", metadata=deepness(["a", "b", "c", "d"]))
    with pytest.raises(MissingPackageError, match="running ONNX models needs"):
        load_model(path)


def test_channels_last_input_is_refused(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["out"])], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["b", 64, 64, 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", 64, 64, 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              str(tmp_path / "nhwc.onnx"))
    with pytest.raises(ModelFileError, match="looks channels-last"):
        load_model(tmp_path / "nhwc.onnx")
