"""``--backend auto|torch|onnx``: an .rsmodel through onnxruntime gives torch's class map and
its probabilities within 1e-4; the graph is cached by the file's hash; auto falls back to torch
with a note, onnx insists with the reason."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio

from engine.analysis.change import detect_change
from engine.formats.modelfile import load_model
from engine.formats.onnx import runtime_graph
from engine.inference.backends import backend_name, check_choice, load_for_inference
from engine.inference.pipeline import predict
from engine.jobs import InputError, Job, ModelFileError
from tests.conftest import make_model, write_raster


@pytest.fixture
def scene(tmp_path):
    rng = np.random.default_rng(5)
    data = rng.integers(1, 255, (4, 150, 170), dtype=np.uint8)
    data[:, :20, :30] = 0
    return write_raster(tmp_path / "scene.tif", data, nodata=0)


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read()


def test_onnxruntime_gives_the_torch_class_map_and_probabilities(tmp_path, scene):
    # seed 0, base 8: a random U-Net that predicts several classes on this scene
    model = make_model(tmp_path / "m.rsmodel", bands=4, classes=6, base=8, depth=2)
    runs = {}
    for backend in ("torch", "onnx"):
        result = predict(model, scene, tmp_path / f"{backend}.tif", device="cpu",
                         probabilities=tmp_path / f"{backend}_p.tif", backend=backend)
        runs[backend] = result
    assert runs["torch"]["backend"] == "torch" and runs["onnx"]["backend"] == "onnxruntime"
    classes = _read(tmp_path / "torch.tif")
    assert len(np.unique(classes)) > 3  # several classes and nodata, not a constant
    assert np.array_equal(classes, _read(tmp_path / "onnx.tif"))
    # uint8 probabilities (p·254): a 1e-4 difference can move a value across one rounding step
    diff = np.abs(_read(tmp_path / "torch_p.tif").astype(int) - _read(tmp_path / "onnx_p.tif"))
    assert diff.max() <= 1


def test_window_probabilities_within_1e4(tmp_path):
    import torch
    model = make_model(tmp_path / "m.rsmodel", bands=4, classes=6, base=4, depth=2)
    torch_lm = load_for_inference(model, torch.device("cpu"), "torch")
    ort_lm = load_for_inference(model, torch.device("cpu"), "onnx")
    x = torch.randn(3, 4, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = torch.softmax(torch_lm.network(image=x), 1).numpy()
    got = ort_lm.network({"image": x.numpy()})
    assert np.abs(got - want).max() <= 1e-4
    assert np.array_equal(got.argmax(1), want.argmax(1))


def test_auto_picks_onnxruntime_and_caches_by_hash(tmp_path, scene):
    import torch
    model = make_model(tmp_path / "m.rsmodel", bands=4, classes=6, base=4, depth=2)
    messages = []
    job = Job(lambda f, m: messages.append(m) if f < 0 else None)
    lm = load_for_inference(model, torch.device("cpu"), "auto", job=job)
    assert backend_name(lm) == "onnxruntime"
    assert any(m.startswith("backend: onnxruntime") for m in messages)
    assert any(m.startswith("threads: ") for m in messages)
    cached = runtime_graph.cached_path(load_model(model))
    assert cached.is_file() and cached.parent == runtime_graph.cache_dir()
    stamp = cached.stat().st_mtime_ns
    load_for_inference(model, torch.device("cpu"), "auto")
    assert cached.stat().st_mtime_ns == stamp  # reused, not rebuilt
    # a changed model file (other weights) gets its own graph: a stale one is never used
    make_model(model, bands=4, classes=6, base=4, depth=2, seed=9)
    assert runtime_graph.cached_path(load_model(model)) != cached
    load_for_inference(model, torch.device("cpu"), "auto")
    assert runtime_graph.cached_path(load_model(model)).is_file()
    # so does a network changed in memory after loading (a model being trained)
    lm = load_model(model)
    with torch.no_grad():
        next(lm.network.parameters()).add_(1.0)
    assert runtime_graph.cached_path(lm) != runtime_graph.cached_path(load_model(model))
    assert backend_name(load_for_inference(lm, torch.device("cpu"), "auto")) == "onnxruntime"
    assert runtime_graph.cached_path(lm).is_file()
    assert not list(runtime_graph.cache_dir().glob("*.partial"))


def test_unwritable_cache_falls_back_to_torch_with_a_note(tmp_path, monkeypatch):
    import torch
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")  # fails even for root
    monkeypatch.setenv("RS_SEG_CACHE", str(blocker))
    model = make_model(tmp_path / "m.rsmodel", bands=4, classes=6, base=4, depth=2)
    messages = []
    lm = load_for_inference(model, torch.device("cpu"), "auto",
                            job=Job(lambda f, m: messages.append(m)))
    assert backend_name(lm) == "torch"
    assert any("torch because" in m and "cannot be written" in m for m in messages)
    with pytest.raises(runtime_graph.CacheUnwritable, match="RS_SEG_CACHE"):
        load_for_inference(model, torch.device("cpu"), "onnx")


def test_architecture_that_does_not_export_stays_on_torch(tmp_path):
    import torch
    from engine.models import srcbtfusion
    model = make_model(tmp_path / "s.rsmodel", arch="srcbtfusion", bands=4, classes=3,
                       **srcbtfusion.TINY)
    messages = []
    lm = load_for_inference(model, torch.device("cpu"), "auto",
                            job=Job(lambda f, m: messages.append(m)))
    assert backend_name(lm) == "torch"
    assert any("srcbtfusion cannot run through onnxruntime" in m for m in messages)
    with pytest.raises(ModelFileError, match="srcbtfusion"):
        load_for_inference(model, torch.device("cpu"), "onnx")


def test_choices_are_checked():
    with pytest.raises(InputError, match="unknown backend 'tensorrt'"):
        check_choice("tensorrt", "fp32")
    with pytest.raises(InputError, match="unknown precision"):
        check_choice("auto", "fp16")
    with pytest.raises(InputError, match="int8 runs through onnxruntime"):
        check_choice("torch", "int8")


def test_int8_without_its_graph_says_how_to_make_it(tmp_path, scene):
    model = make_model(tmp_path / "m.rsmodel", bands=4, classes=6, base=4, depth=2)
    with pytest.raises(ModelFileError, match="--quantize int8"):
        predict(model, scene, tmp_path / "o.tif", device="cpu", precision="int8")
    assert not (tmp_path / "o.tif").exists()


def test_change_model_through_onnxruntime_matches_torch(tmp_path, scene):
    t2 = write_raster(tmp_path / "t2.tif",
                      np.random.default_rng(6).integers(1, 255, (4, 150, 170), dtype=np.uint8))
    model = make_model(tmp_path / "c.rsmodel", arch="fcsiamdiff", bands=4, classes=2, base=4,
                       depth=2)
    for backend in ("torch", "onnx"):
        detect_change(model, scene, t2, tmp_path / f"{backend}.tif", device="cpu",
                      probabilities=tmp_path / f"{backend}_p.tif", backend=backend)
    assert np.array_equal(_read(tmp_path / "torch.tif"), _read(tmp_path / "onnx.tif"))
    diff = np.abs(_read(tmp_path / "torch_p.tif").astype(int) - _read(tmp_path / "onnx_p.tif"))
    assert diff.max() <= 1
