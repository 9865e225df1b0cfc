"""Deepness parity: thresholds as Deepness applies them, graphs that only run one window at a
time, every output its own class raster, logits put through a softmax, other kinds named."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import rasterio
import torch

from engine.__main__ import main
from engine.formats.modelfile import read_card
from engine.formats.onnx.model import load_onnx
from engine.formats.overrides import definition_of, load_defined
from engine.inference.pipeline import predict
from engine.jobs import InputError, ModelFileError

from .conftest import Head, deepness, export


def classes_of(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def scores(head: torch.nn.Module, raster, scale: float = 255) -> np.ndarray:
    with rasterio.open(raster) as ds:
        x = torch.from_numpy(ds.read().astype(np.float32))[None] / scale
    with torch.no_grad():
        out = head(x)
    return (out[0] if isinstance(out, tuple) else out)[0].numpy()


def deepness_rule(p: np.ndarray, threshold: float) -> np.ndarray:
    """Deepness's post-processing of one output (C×H×W probabilities, or H×W for a sigmoid)."""
    p = np.where(p < threshold, 0.0, p)
    if p.ndim == 2 or p.shape[0] == 1:
        return (p.reshape(p.shape[-2:]) != 0).astype(np.uint8)
    return p.argmax(0).astype(np.uint8)


@pytest.mark.parametrize("threshold", [None, 0.4, 0.7])
def test_multi_class_threshold_is_deepness(tmp_path, rgb, threshold):
    head = Head(channels=3)
    meta = deepness(["a", "b", "c"]) if threshold is None else \
        deepness(["a", "b", "c"], seg_thresh=threshold)
    path = export(head, tmp_path / "m.onnx", dynamic_size=True, metadata=meta)
    out = tmp_path / "classes.tif"
    predict(path, rgb, out, tile=64, overlap=0, gsd="native")
    want = deepness_rule(scores(head, rgb), 0.5 if threshold is None else threshold)
    assert np.array_equal(classes_of(out), want)


def test_threshold_override_reaches_rsmodel_and_onnx(tmp_path, rgb):
    head = Head(channels=1, activation="sigmoid")
    path = export(head, tmp_path / "s.onnx", dynamic_size=True, metadata=deepness(["roof"]))
    p = scores(head, rgb)[0]
    for cut in (0.3, 0.8):
        model = load_defined(path, "cpu", definition_of(threshold=cut))
        out = tmp_path / f"t{cut}.tif"
        predict(model, rgb, out, tile=64, overlap=0, gsd="native")
        assert np.array_equal(classes_of(out), deepness_rule(p, cut))
    assert (deepness_rule(p, 0.3) != deepness_rule(p, 0.8)).any()


def test_threshold_on_an_rsmodel(tmp_path, rgb):
    model = tmp_path / "m.rsmodel"
    assert main(["init-model", "--bands", "3", "--classes", "3", "--out", str(model),
                 "--tile", "64", "--overlap", "16"]) == 0
    plain, cut = tmp_path / "plain.tif", tmp_path / "cut.tif"
    predict(model, rgb, plain, gsd="native")
    predict(load_defined(model, "cpu", definition_of(threshold=0.9)), rgb, cut, gsd="native")
    # an untrained model is never 90 % sure: everything falls to the first class, as in Deepness
    first = read_card(model)["classes"][0]["value"]
    assert (classes_of(plain) != first).any() and (classes_of(cut) == first).all()


class BatchOne(torch.nn.Module):
    """Declares a dynamic batch but reshapes to batch 1 inside (found in exported models)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = Head(channels=2)

    def forward(self, x):
        return self.head(x.reshape(1, 3, 64, 64))


def test_batch_one_graph_runs_at_batch_one_with_a_note(tmp_path, rgb):
    head = BatchOne()
    path = export(head, tmp_path / "b1.onnx", batch=1, metadata=deepness(["a", "b"]))
    graph = onnx.load(str(path))  # what such exports declare: a dynamic batch axis
    for value in (graph.graph.input[0], graph.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(graph, str(path))
    model = load_onnx(path)
    assert model.card["onnx"]["batch"] == 1
    assert "only runs one window at a time" in model.card["onnx"]["notes"][0]
    out = tmp_path / "out.tif"
    result = predict(model, rgb, out, batch_size=8, gsd="native", tile=64, overlap=0)
    assert any("batch 1" in n for n in result["notes"])
    assert np.array_equal(classes_of(out), deepness_rule(scores(head.head, rgb), 0.5))


def test_every_output_its_own_raster(tmp_path, rgb, capsys):
    head = Head(channels=3, two_outputs=True)   # (softmax 3 classes, their mean: one channel)
    path = export(head, tmp_path / "two.onnx", outputs=("landcover", "confidence"),
                  metadata={"model_type": "Segmentor", "seg_small_segment": 0,
                            "class_names": [{0: "a", 1: "b", 2: "c"}, {0: "sure"}]})
    pattern = tmp_path / "out_{output}.tif"
    assert main(["predict", "--model", str(path), "--input", str(rgb), "--output", str(pattern),
                 "--gsd", "native"]) == 0
    with torch.no_grad():
        x = torch.from_numpy(rasterio.open(rgb).read().astype(np.float32))[None] / 255
        first, second = (t[0].numpy() for t in head(x))
    landcover, confidence = tmp_path / "out_landcover.tif", tmp_path / "out_confidence.tif"
    assert (classes_of(landcover) == deepness_rule(first, 0.5)).mean() > 0.99
    assert (classes_of(confidence) == deepness_rule(second, 0.5)).mean() > 0.99
    with rasterio.open(confidence) as ds:
        assert ds.tags(1)["CLASS_1"] == "sure"
    single = tmp_path / "one.tif"
    assert main(["predict", "--model", str(path), "--input", str(rgb), "--output", str(single),
                 "--output-index", "1", "--gsd", "native"]) == 0
    assert np.array_equal(classes_of(single), classes_of(confidence))
    assert "put {output} in --output to write each" in capsys.readouterr().out


def test_deepness_logits_get_a_softmax_not_a_clip(tmp_path, rgb):
    head = Head(channels=3, activation="none")
    path = export(head, tmp_path / "logits.onnx", dynamic_size=True,
                  metadata=deepness(["a", "b", "c"], seg_thresh=0.0))
    model = load_onnx(path)
    assert model.card["onnx"]["activation"] == "softmax"
    out = tmp_path / "c.tif"
    predict(model, rgb, out, tile=64, overlap=0, gsd="native")
    logits = scores(head, rgb)
    probs = torch.softmax(torch.from_numpy(logits), 0).numpy()
    assert np.array_equal(classes_of(out), probs.argmax(0))
    assert not np.array_equal(np.clip(logits, 0, 1).argmax(0), probs.argmax(0))


class Upscale(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")


def test_super_resolution_and_declared_kinds_are_named(tmp_path):
    bare = export(Upscale(), tmp_path / "sr.onnx", batch=1)
    with pytest.raises(ModelFileError, match=r"is a super-resolution model \(a 128 px output "
                                             r"for a 64 px input, 2× larger\)"):
        load_onnx(bare)
    for kind, words in (("Superresolution", "a super-resolution model"),
                        ("Regressor", "a regression model"),
                        ("Recognition", "an image-recognition")):
        path = export(Head(channels=2), tmp_path / f"{kind}.onnx",
                      metadata={"model_type": kind})
        with pytest.raises(ModelFileError, match=f"is {words}.*model_type '{kind}'"):
            load_onnx(path)


class TwoDates(torch.nn.Module):
    """A bare two-input change graph: sigmoid of a weighted band difference."""

    def forward(self, t1, t2):
        return torch.sigmoid(((t2 - t1) * torch.tensor([3.0, -2.0, 1.0])[:, None, None])
                             .sum(1, keepdim=True))


def test_change_takes_the_same_overrides(tmp_path, capsys):
    path = export(TwoDates(), tmp_path / "cd.onnx", dynamic_size=True, inputs=("a", "b"))
    rng = np.random.default_rng(0)
    t1, t2 = (rng.random((3, 64, 64), dtype=np.float32) for _ in range(2))
    from tests.conftest import write_raster
    p1, p2 = write_raster(tmp_path / "t1.tif", t1), write_raster(tmp_path / "t2.tif", t2)
    out = tmp_path / "change.tif"
    # 0–1 reflectance into the default 0–255 input: refused with the fix, nothing written
    assert main(["change", "--model", str(path), "--t1", str(p1), "--t2", str(p2), "--output",
                 str(out), "--tile", "64", "--overlap", "0", "--gsd", "native"]) == 2
    assert "give --input-scale 1" in capsys.readouterr().err and not out.exists()
    assert main(["change", "--model", str(path), "--t1", str(p1), "--t2", str(p2), "--output",
                 str(out), "--tile", "64", "--overlap", "0", "--gsd", "native",
                 "--input-scale", "1", "--mean", "0.5", "--std", "0.25"]) == 0
    z1, z2 = ((torch.from_numpy(t) - 0.5) / 0.25 for t in (t1, t2))
    want = TwoDates()(z1[None], z2[None])[0, 0].numpy() >= 0.5
    assert np.array_equal(classes_of(out), want.astype(np.uint8))


def test_runtime_failures_are_a_sentence(tmp_path):
    model = load_onnx(export(Head(channels=2), tmp_path / "m.onnx", metadata=deepness(["a", "b"])))

    class Failing:  # what onnxruntime raises when a graph cannot take the batch it is fed
        def run(self, names, feeds):
            raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid "
                               "dimensions for input\nmore lines")

    model.network.session = Failing()
    with pytest.raises(InputError, match=r"failed on a batch of 4 window\(s\) \(\[ONNXRuntime"
                                         r"Error\] : 2 : INVALID_ARGUMENT .*\); try --batch-size 1"):
        model.network({"image": np.zeros((4, 3, 64, 64), np.float32)})


def median_reference(classes: np.ndarray, size: int) -> np.ndarray:
    """OpenCV's medianBlur (what Deepness runs), in plain numpy: edges replicated."""
    k = size // 2 * 2 + 1
    padded = np.pad(classes, k // 2, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k))
    return np.median(windows.reshape(*classes.shape, -1), axis=-1).astype(classes.dtype)


@pytest.mark.parametrize("meta, size", [({}, 9), ({"seg_small_segment": 5}, 5),
                                        ({"seg_small_segment": 0}, 0)])
def test_small_segments_removed_as_deepness_does(tmp_path, meta, size):
    head = Head(channels=3)
    metadata = {"model_type": "Segmentor", "class_names": {0: "a", 1: "b", 2: "c"}, **meta}
    path = export(head, tmp_path / "m.onnx", dynamic_size=True, metadata=metadata)
    # smooth regions with noise on top: segments of every size
    rng = np.random.default_rng(2)
    base = np.kron(rng.integers(0, 255, (3, 10, 9)), np.ones((1, 16, 16)))[:, :150, :130]
    from tests.conftest import write_raster
    raster = write_raster(tmp_path / "r.tif", np.clip(base + rng.normal(0, 40, base.shape),
                                                      0, 255).astype(np.uint8))
    assert load_onnx(path).card.get("small_segment") == (size or None)
    out = tmp_path / "c.tif"
    predict(path, raster, out, tile=64, overlap=0, gsd="native", batch_size=3)
    plain = deepness_rule(scores(head, raster), 0.5)
    want = median_reference(plain, size) if size else plain
    assert np.array_equal(classes_of(out), want)
    assert size == 0 or (want != plain).mean() > 0.01  # the filter changed something
    off = tmp_path / "off.tif"
    predict(load_defined(path, "cpu", definition_of(small_segment=0)), raster, off, tile=64,
            overlap=0, gsd="native")
    assert np.array_equal(classes_of(off), plain)


class ChangeLogits(torch.nn.Module):
    """A bare change graph ending in one unbounded channel (logits), as published CD heads do."""

    def forward(self, t1, t2):
        return ((t2 - t1) * 8.0).sum(1, keepdim=True) - 0.5


def test_two_input_logits_are_change_logits(tmp_path):
    path = export(ChangeLogits(), tmp_path / "cd.onnx", dynamic_size=True, inputs=("a", "b"))
    card = load_onnx(path).card
    assert card["task"] == "change" and card["onnx"]["activation"] == "sigmoid"
    assert [c["name"] for c in card["classes"]] == ["no change", "change"]
