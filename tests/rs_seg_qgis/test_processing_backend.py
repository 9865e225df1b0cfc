"""BACKEND / PRECISION of the inference algorithms: onnxruntime and torch give the same class
map through Processing; int8 without a quantised graph says how to make one."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from tests.conftest import make_model, write_raster

pytestmark = pytest.mark.qgis


class Log(QgsProcessingFeedback):
    def __init__(self) -> None:
        super().__init__()
        self.lines = []

    def pushInfo(self, info: str) -> None:  # noqa: N802 (QGIS API)
        self.lines.append(info)


def test_segment_backends_agree_and_int8_needs_its_graph(provider, tmp_path):
    import processing
    rng = np.random.default_rng(7)
    image = write_raster(tmp_path / "image.tif", rng.integers(0, 255, (4, 96, 96), np.uint8))
    model = make_model(tmp_path / "unet.rsmodel", base=8, depth=2, tile=64, overlap=16)
    maps = {}
    for backend in ("torch", "onnx"):
        log = Log()
        out = tmp_path / f"{backend}.tif"
        processing.run("rs_seg:segment", {"INPUT": str(image), "MODEL": str(model),
                                          "DEVICE": "cpu", "BACKEND": backend,
                                          "OUTPUT": str(out)}, feedback=log)
        with rasterio.open(out) as ds:
            maps[backend] = ds.read(1)
        name = "onnxruntime" if backend == "onnx" else "torch"
        assert any(line.startswith(f"backend: {name}") for line in log.lines), log.lines
    assert np.array_equal(maps["torch"], maps["onnx"])
    with pytest.raises(QgsProcessingException, match="--quantize int8"):
        processing.run("rs_seg:segment", {"INPUT": str(image), "MODEL": str(model),
                                          "DEVICE": "cpu", "PRECISION": "int8",
                                          "OUTPUT": str(tmp_path / "int8.tif")})
    assert not (tmp_path / "int8.tif").exists()


def test_quantize_int8_then_segment_with_int8(provider, tmp_path):
    import processing
    rng = np.random.default_rng(3)
    image = write_raster(tmp_path / "image.tif", rng.integers(0, 255, (4, 96, 96), np.uint8))
    model = make_model(tmp_path / "p.rsmodel", arch="test-pointwise", bands=4, classes=5,
                       tile=64, overlap=16)
    result = processing.run("rs_seg:quantize_int8", {"MODEL": str(model),
                                                     "CALIBRATION": str(image), "WINDOWS": 2})
    assert 0.99 <= result["AGREEMENT"] <= 1.0
    processing.run("rs_seg:segment", {"INPUT": str(image), "MODEL": str(model), "DEVICE": "cpu",
                                      "PRECISION": "int8", "OUTPUT": str(tmp_path / "q.tif")})
    assert (tmp_path / "q.tif").exists()
