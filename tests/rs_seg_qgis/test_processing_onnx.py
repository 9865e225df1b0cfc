"""rs_seg:export_onnx and ONNX models in the segment algorithm (ONNX both ways in Processing)."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from qgis.core import QgsProcessingException

from engine.formats.card import default_card
from engine.formats.modelfile import save_model
from engine.models import build, srcbtfusion
from tests.conftest import make_model, write_raster

from .test_processing import _clear_leaked_frames, run  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.qgis


def test_export_then_segment_with_the_onnx_model(provider, tmp_path):
    image = write_raster(tmp_path / "image.tif",
                         np.random.default_rng(1).integers(0, 255, (4, 80, 90), dtype=np.uint8))
    model = make_model(tmp_path / "unet.rsmodel", base=4, depth=2, tile=64, overlap=16)
    exported = run("export_onnx", {"MODEL": str(model), "OUTPUT": str(tmp_path / "unet.onnx")})
    assert exported["MAX_ABS_DIFF"] <= 1e-4 and (tmp_path / "unet.onnx").is_file()
    outputs = {}
    for name in ("unet.rsmodel", "unet.onnx"):
        out = tmp_path / f"{name}.tif"
        run("segment", {"INPUT": str(image), "MODEL": str(tmp_path / name), "DEVICE": "cpu",
                        "OUTPUT": str(out)})
        with rasterio.open(out) as ds:
            outputs[name] = ds.read(1)
    assert np.array_equal(outputs["unet.rsmodel"], outputs["unet.onnx"])


def test_export_of_an_architecture_torch_cannot_export_says_why(provider, tmp_path):
    card = default_card("srcbtfusion", 3, 3, tile_size=64, overlap=16,
                        hparams=dict(srcbtfusion.TINY))
    save_model(tmp_path / "s.rsmodel", card, build("srcbtfusion", **card["hparams"]))
    with pytest.raises(QgsProcessingException, match="srcbtfusion cannot be exported to ONNX"):
        run("export_onnx", {"MODEL": str(tmp_path / "s.rsmodel"),
                            "OUTPUT": str(tmp_path / "s.onnx")})
    assert not (tmp_path / "s.onnx").exists()


def test_every_output_a_layer_named_by_its_classes_and_overrides(provider, tmp_path,
                                                                  qgis_new_project):
    import processing
    from tests.engine.formats.onnx.conftest import Head, export

    from .test_processing import loaded
    path = export(Head(channels=3, two_outputs=True), tmp_path / "two.onnx",
                  outputs=("landcover", "confidence"),
                  metadata={"model_type": "Segmentor",
                            "class_names": [{0: "soil", 1: "crop", 2: "water"}, {0: "sure"}]})
    image = write_raster(tmp_path / "image.tif",
                         np.random.default_rng(1).integers(0, 255, (3, 80, 90), dtype=np.uint8))
    out = tmp_path / "classes.tif"
    processing.runAndLoadResults("rs_seg:segment", {
        "INPUT": str(image), "MODEL": str(path), "DEVICE": "cpu", "OUTPUT": str(out),
        "GSD": "native"})
    second = tmp_path / "classes_confidence.tif"
    assert second.is_file()
    assert loaded(out).name() == "soil, crop, water"
    assert loaded(second).name() == "confidence: background, sure"
    # overrides reach the engine: a threshold above every probability leaves the first class
    run("segment", {"INPUT": str(image), "MODEL": str(path), "DEVICE": "cpu", "GSD": "native",
                    "OUTPUT": str(tmp_path / "cut.tif"), "THRESHOLD": 0.99, "OUTPUT_INDEX": 0,
                    "CLASSES": "a,b,c"})
    with rasterio.open(tmp_path / "cut.tif") as ds:
        assert (ds.read(1) == 0).all() and ds.tags(1)["CLASS_2"] == "c"
    assert not (tmp_path / "cut_confidence.tif").exists()
    with pytest.raises(QgsProcessingException, match="MEAN must be comma-separated numbers"):
        run("segment", {"INPUT": str(image), "MODEL": str(path), "DEVICE": "cpu",
                        "OUTPUT": str(tmp_path / "x.tif"), "MEAN": "a,b", "STD": "1"})
