"""``engine export``: RS Seg models as ONNX (card + Deepness metadata, folded normalisation),
round trips that reproduce torch, change models with two inputs, and every zoo architecture
either exporting or saying why not."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import rasterio
import torch

from engine.formats.card import default_card
from engine.analysis.change import detect_change
from engine.inference.pipeline import predict
from engine.jobs import ModelFileError
from engine.formats.modelfile import load_model, read_card, save_model
from engine.models import available, build, cafe, glcnet, sgsln, srcbtfusion, vsgnet
from engine.formats.onnx.export import NOT_EXPORTABLE, export_onnx
from tests.conftest import ROOT, make_model, write_raster

from .test_model import classes_of, window_probabilities

# Small configurations: the test box has two shared cores.
TINY = {"unet": {"base": 4, "depth": 2}, "fcsiamdiff": {"base": 4, "depth": 2},
        "cafe": cafe.TINY, "glcnet": glcnet.TINY, "sgsln": sgsln.TINY,
        "srcbtfusion": srcbtfusion.TINY, "vsgnet": vsgnet.TINY}


@pytest.fixture
def scene(tmp_path):
    """A 4-band uint8 scene with a nodata corner and a second date."""
    rng = np.random.default_rng(11)
    t1 = rng.integers(1, 255, (4, 150, 170), dtype=np.uint8)
    t1[:, :20, :30] = 0
    t2 = np.clip(t1.astype(int) + rng.integers(-60, 60, t1.shape), 1, 255).astype(np.uint8)
    return (write_raster(tmp_path / "t1.tif", t1, nodata=0),
            write_raster(tmp_path / "t2.tif", t2))


def metadata(path):
    return {m.key: m.value for m in onnx.load(str(path)).metadata_props}


def test_round_trip_reproduces_torch_and_carries_deepness_metadata(tmp_path, scene):
    image, _ = scene
    model = make_model(tmp_path / "m.rsmodel", bands=4, classes=6, tile=64, overlap=16,
                       base=4, depth=2)
    result = export_onnx(model, tmp_path / "m.onnx")
    assert result["max_abs_diff"] <= 1e-4 and result["opset"] >= 17
    graph = onnx.load(str(tmp_path / "m.onnx"))
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [4, 64, 64]
    meta = metadata(tmp_path / "m.onnx")
    card = read_card(model)
    assert json.loads(meta["model_type"]) == "Segmentor"
    assert json.loads(meta["class_names"]) == {str(i): c["name"]
                                               for i, c in enumerate(card["classes"])}
    assert json.loads(meta["tiles_size"]) == json.loads(meta["tile_size"]) == 64
    assert json.loads(meta["tiles_overlap"]) == 25       # % of the tile
    assert json.loads(meta["standardization_mean"]) == [0.0] * 4  # folded into the graph
    assert json.loads(meta["standardization_std"]) == [1.0] * 4
    assert json.loads(meta["seg_thresh"]) == 0.0 and json.loads(meta["seg_small_segment"]) == 0
    loaded = read_card(tmp_path / "m.onnx")
    assert {k: v for k, v in loaded.items() if k != "onnx"} == card
    # the same windows through the same pipeline: torch vs onnxruntime
    diff = np.abs(window_probabilities(model, image) - window_probabilities(tmp_path / "m.onnx",
                                                                            image))
    assert diff.max() <= 1e-4
    predict(model, image, tmp_path / "torch.tif", backend="torch")
    predict(tmp_path / "m.onnx", image, tmp_path / "ort.tif")
    assert np.array_equal(classes_of(tmp_path / "torch.tif"), classes_of(tmp_path / "ort.tif"))


def test_deepness_style_input_gives_the_torch_probabilities(tmp_path):
    """What Deepness does (bands / 255 into the graph, no standardisation) reproduces torch."""
    model = make_model(tmp_path / "m.rsmodel", bands=3, classes=3, tile=32, overlap=8,
                       base=4, depth=2)
    export_onnx(model, tmp_path / "m.onnx")
    lm = load_model(model)
    card = lm.card["inputs"]["image"]
    dn = np.random.default_rng(0).integers(0, 255, (2, 3, 32, 32)).astype(np.float32)
    z = (torch.from_numpy(dn) - torch.tensor(card["mean"])[:, None, None]) \
        / torch.tensor(card["std"])[:, None, None]
    with torch.no_grad():
        want = torch.softmax(lm.network(image=z), 1).numpy()
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"image": dn / 255})[0]
    assert np.abs(got - want).max() <= 1e-4


def test_dynamic_size_export_runs_other_window_sizes(tmp_path, scene):
    image, _ = scene
    model = make_model(tmp_path / "m.rsmodel", bands=4, classes=3, tile=64, overlap=16,
                       base=4, depth=2)
    export_onnx(model, tmp_path / "d.onnx", dynamic_size=True)
    card = read_card(tmp_path / "d.onnx")
    assert card["onnx"]["size"] is None
    predict(model, image, tmp_path / "a.tif", tile=96, overlap=16)
    predict(tmp_path / "d.onnx", image, tmp_path / "b.tif", tile=96, overlap=16)
    assert np.array_equal(classes_of(tmp_path / "a.tif"), classes_of(tmp_path / "b.tif"))


def test_fixed_size_export_refuses_another_tile(tmp_path, scene):
    image, _ = scene
    model = make_model(tmp_path / "m.rsmodel", bands=4, classes=3, tile=64, overlap=16,
                       base=4, depth=2)
    export_onnx(model, tmp_path / "f.onnx")
    with pytest.raises(Exception, match=r"only takes 64×64 windows; use --tile 64"):
        predict(tmp_path / "f.onnx", image, tmp_path / "x.tif", tile=96)


def test_change_model_exports_with_two_inputs_and_detects_the_same_change(tmp_path, scene):
    t1, t2 = scene
    card = default_card("fcsiamdiff", 4, 2, tile_size=64, overlap=16, hparams=TINY["fcsiamdiff"])
    torch.manual_seed(0)
    save_model(tmp_path / "cd.rsmodel", card, build("fcsiamdiff", **card["hparams"]))
    result = export_onnx(tmp_path / "cd.rsmodel", tmp_path / "cd.onnx")
    assert result["inputs"] == ["t1", "t2"] and "Deepness" in result["notes"][0]
    graph = onnx.load(str(tmp_path / "cd.onnx"))
    assert [i.name for i in graph.graph.input] == ["t1", "t2"]
    assert "model_type" not in metadata(tmp_path / "cd.onnx")
    a = detect_change(tmp_path / "cd.rsmodel", t1, t2, tmp_path / "a.tif",
                      probabilities=tmp_path / "pa.tif")
    b = detect_change(tmp_path / "cd.onnx", t1, t2, tmp_path / "b.tif",
                      probabilities=tmp_path / "pb.tif")
    assert a["changed_fraction"] == b["changed_fraction"]
    assert np.array_equal(classes_of(tmp_path / "a.tif"), classes_of(tmp_path / "b.tif"))
    with rasterio.open(tmp_path / "pa.tif") as pa, rasterio.open(tmp_path / "pb.tif") as pb:
        assert np.abs(pa.read().astype(int) - pb.read().astype(int)).max() <= 1


@pytest.mark.parametrize("arch", [a for a in available() if not a.startswith("test")])
def test_every_zoo_architecture_exports_or_says_why_not(tmp_path, arch):
    torch.set_num_threads(1)
    task_change = arch in ("fcsiamdiff", "sgsln")
    card = default_card(arch, 3, 2 if task_change else 3, tile_size=64, overlap=16,
                        hparams=dict(TINY.get(arch, {})))
    torch.manual_seed(0)
    save_model(tmp_path / "m.rsmodel", card, build(arch, **card["hparams"]))
    try:
        result = export_onnx(tmp_path / "m.rsmodel", tmp_path / "m.onnx")
    except ModelFileError as exc:
        text = str(exc)
        assert arch in NOT_EXPORTABLE and text.startswith(f"{arch} cannot be exported to ONNX: ")
        assert "\n" not in text and text.count(". ") == 0 and len(text) < 300
        assert not (tmp_path / "m.onnx").exists()
        return
    assert arch not in NOT_EXPORTABLE
    assert result["max_abs_diff"] <= 1e-4
    assert read_card(tmp_path / "m.onnx")["architecture"] == arch


def test_pretrained_backbone_is_refused(tmp_path):
    card = default_card("unet", 3, 2, tile_size=32, overlap=8, hparams=TINY["unet"])
    card.update(task="pretrained", classes=[])
    save_model(tmp_path / "p.rsmodel", card, build("unet", **card["hparams"]))
    with pytest.raises(ModelFileError, match="pre-trained backbone without classes"):
        export_onnx(tmp_path / "p.rsmodel", tmp_path / "p.onnx")


def test_command_line_export_and_info(tmp_path):
    model = make_model(tmp_path / "m.rsmodel", bands=3, classes=3, tile=32, overlap=8,
                       base=4, depth=2)
    env_python = [sys.executable, "-m", "engine"]
    run = subprocess.run([*env_python, "export", "--model", str(model), "--output",
                          str(tmp_path / "m.onnx")], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert "wrote" in run.stdout and "max |Δp|" in run.stdout
    info = subprocess.run([*env_python, "info", str(tmp_path / "m.onnx")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert info.returncode == 0 and "card from rs_seg" in info.stdout
    bad = subprocess.run([*env_python, "export", "--model", str(tmp_path / "missing.rsmodel"),
                          "--output", str(tmp_path / "x.onnx")], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "does not exist" in bad.stderr
