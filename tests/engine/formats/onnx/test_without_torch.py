"""With torch hidden (an import blocker on sys.meta_path, in a fresh interpreter), ONNX models
still segment, click and detect change through the engine, and the QGIS provider segments."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio

from engine.formats.onnx.export import export_onnx
from engine.formats.card import default_card
from engine.formats.modelfile import save_model
from engine.models import build
from tests.conftest import ROOT, make_model, write_raster

from .conftest import Head, export

# Every meta-path finder is wrapped so that the HIDDEN packages are not found, exactly as if not
# installed (find_spec gives None, import raises ModuleNotFoundError).
BLOCK_TORCH = """
import sys
class _HideTorch:
    def __init__(self, inner):
        self.inner = inner
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            return None
        return self.inner.find_spec(name, path, target)
    def __getattr__(self, attr):
        return getattr(self.inner, attr)
sys.meta_path[:] = [_HideTorch(f) if hasattr(f, "find_spec") else f for f in sys.meta_path]
sys.path[:0] = [ROOT, "/usr/share/qgis/python/plugins"]
"""

ENGINE_SCRIPT = BLOCK_TORCH + """
import json, rasterio
import engine
from engine.formats.modelfile import read_card
out = {}
out["predict"] = engine.predict(SEG, IMAGE, TMP + "/classes.tif", probabilities=TMP + "/p.tif")
with rasterio.open(IMAGE) as ds:
    x, y = ds.xy(60, 70)
hit = engine.segment_at(SEG, IMAGE, x, y, window=64)
out["point"] = [hit["class_name"], hit["area_m2"]]
out["change"] = engine.detect_change(CD, IMAGE, IMAGE2, TMP + "/change.tif")["changed_fraction"]
out["card"] = read_card(SEG)["onnx"]["source"]
out["bare"] = [read_card(BARE)["onnx"]["activation"], read_card(SIGMOID)["onnx"]["activation"]]
try:
    engine.detect_change("cva", IMAGE, IMAGE2, TMP + "/cva.tif")
except ImportError as exc:
    out["cva"] = str(exc)
from engine.__main__ import main
out["cli"] = [main(["predict", "--model", SEG, "--input", IMAGE, "--output", TMP + "/cli.tif"]),
              main(["info", BARE, "--classes", "a,b,c"]),
              main(["train", "--arch", "unet", "--image", IMAGE, "--out", TMP + "/m.rsmodel"])]
out["torch_loaded"] = "torch" in sys.modules
out["onnx_loaded"] = "onnx" in sys.modules
print("RESULT" + json.dumps(out, default=str))
"""

PROVIDER_SCRIPT = BLOCK_TORCH + """
import json, os
from qgis.core import QgsApplication, QgsProcessingException
app = QgsApplication([], False)
app.initQgis()
from processing.core.Processing import Processing
Processing.initialize()
import processing
from rs_seg_qgis.processing.provider import RsSegProvider
provider = RsSegProvider()  # kept referenced: the registry does not own the Python object
QgsApplication.processingRegistry().addProvider(provider)
result = processing.run("rs_seg:segment", {"INPUT": IMAGE, "MODEL": SEG, "DEVICE": "cpu",
                                           "OUTPUT": TMP + "/qgis.tif"})
try:
    processing.run("rs_seg:segment", {"INPUT": IMAGE, "MODEL": RSMODEL, "OUTPUT": TMP + "/x.tif"})
except QgsProcessingException as exc:
    refused = str(exc)
print("RESULT" + json.dumps({"output": result["OUTPUT"], "refused": refused,
                             "torch_loaded": "torch" in sys.modules}))
os._exit(0)  # skip QGIS's exit-time teardown (a known PyQGIS 3.22 crash source)
"""


def _run(script: str, tmp_path, hidden=("torch",), **names) -> dict:
    header = "".join(f"{k} = {str(v)!r}\n" for k, v in {"ROOT": ROOT, "TMP": tmp_path,
                                                        **names}.items())
    header += f"HIDDEN = {tuple(hidden)!r}\n"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "OMP_NUM_THREADS": "1",
           "QGIS_CUSTOM_CONFIG_PATH": str(tmp_path / "profile")}
    r = subprocess.run([sys.executable, "-c", header + script], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path, env=env)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT")]
    assert r.returncode == 0 and lines, r.stdout[-2000:] + r.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT"):])


@pytest.fixture
def onnx_models(tmp_path):
    rng = np.random.default_rng(5)
    image = write_raster(tmp_path / "t1.tif", rng.integers(1, 255, (4, 120, 140), dtype=np.uint8))
    image2 = write_raster(tmp_path / "t2.tif", rng.integers(1, 255, (4, 120, 140), dtype=np.uint8))
    seg = make_model(tmp_path / "seg.rsmodel", bands=4, classes=3, tile=64, overlap=16,
                     base=4, depth=2)
    export_onnx(seg, tmp_path / "seg.onnx")
    card = default_card("fcsiamdiff", 4, 2, tile_size=64, overlap=16,
                        hparams={"base": 4, "depth": 2})
    save_model(tmp_path / "cd.rsmodel", card, build("fcsiamdiff", **card["hparams"]))
    export_onnx(tmp_path / "cd.rsmodel", tmp_path / "cd.onnx")
    bare = export(Head(bands=4, channels=3, activation="none"), tmp_path / "bare.onnx", bands=4)
    sigmoid = export(Head(bands=4, channels=1, activation="sigmoid"), tmp_path / "sig.onnx",
                     bands=4, batch=1)
    return {"IMAGE": image, "IMAGE2": image2, "SEG": tmp_path / "seg.onnx",
            "CD": tmp_path / "cd.onnx", "RSMODEL": seg, "BARE": bare, "SIGMOID": sigmoid}


@pytest.mark.parametrize("hidden", [("torch",), ("torch", "onnx")])
def test_engine_runs_onnx_models_without_torch(tmp_path, onnx_models, hidden):
    """Without torch, and also without the onnx package (an onnxruntime-only install)."""
    from engine.inference.pipeline import predict
    out = _run(ENGINE_SCRIPT, tmp_path, hidden, **onnx_models)
    assert out["torch_loaded"] is False and out["card"] == "rs_seg"
    assert out["onnx_loaded"] is ("onnx" not in hidden)
    assert out["cli"] == [0, 0, 2]  # predict and info run; train says it needs torch
    assert out["bare"] == ["softmax", "none"]  # logits get a softmax; a sigmoid head does not
    assert out["predict"]["windows"] == 9 and out["point"][1] > 0
    assert 0 <= out["change"] <= 1
    assert "No module named 'torch'" in out["cva"]  # CVA (and training) still need torch
    predict(onnx_models["RSMODEL"], onnx_models["IMAGE"], tmp_path / "torch.tif",
            probabilities=tmp_path / "torch_p.tif")
    with rasterio.open(tmp_path / "classes.tif") as a, rasterio.open(tmp_path / "torch.tif") as b:
        assert np.array_equal(a.read(), b.read())
    with rasterio.open(tmp_path / "p.tif") as a, rasterio.open(tmp_path / "torch_p.tif") as b:
        assert np.abs(a.read().astype(int) - b.read().astype(int)).max() <= 1


@pytest.mark.qgis
def test_qgis_provider_segments_with_onnx_without_torch(tmp_path, onnx_models):
    out = _run(PROVIDER_SCRIPT, tmp_path, **onnx_models)
    assert out["torch_loaded"] is False
    with rasterio.open(out["output"]) as ds:
        assert ds.read(1).shape == (120, 140)
    assert "RS Seg needs torch" in out["refused"]  # an .rsmodel still needs torch
