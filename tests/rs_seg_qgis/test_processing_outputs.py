"""Processing refuses unsafe output paths before any work, and a damaged raster ends in one
sentence (the engine's), not a traceback."""
from __future__ import annotations

import numpy as np
import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from tests.conftest import make_model, write_raster

pytestmark = pytest.mark.qgis


class Recorder(QgsProcessingFeedback):
    """Every text the algorithm reported."""

    def __init__(self) -> None:
        super().__init__()
        self.texts = []

    def reportError(self, error, fatalError=False):  # noqa: N802 (QGIS API)
        self.texts.append(error)

    def pushInfo(self, info):  # noqa: N802 (QGIS API)
        self.texts.append(info)


@pytest.fixture
def scene(tmp_path):
    rng = np.random.default_rng(3)
    image = write_raster(tmp_path / "image.tif", rng.integers(0, 255, (4, 96, 96), np.uint8))
    model = make_model(tmp_path / "unet.rsmodel", base=4, depth=2, tile=64, overlap=16)
    return image, model


def run(alg, params, feedback=None):
    import processing
    return processing.run(f"rs_seg:{alg}", params, feedback=feedback)


def _files(folder):
    """The folder's files and their bytes; QGIS itself writes the statistics of a layer it
    opens to an .aux.xml beside it, which is not the algorithm's doing."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.endswith(".aux.xml")}


@pytest.mark.parametrize("outputs, message", [
    ({"OUTPUT": "image.tif"}, r"OUTPUT would write .*image.tif, which is an input"),
    ({"OUTPUT": "unet.rsmodel"}, r"OUTPUT would write .*unet.rsmodel, which is an input"),
    ({"OUTPUT": "a.tif", "OUTPUT_PROBABILITY": "a.tif"}, "OUTPUT and OUTPUT_PROBABILITY would both "
                                                         "write"),
    ({"OUTPUT": "a.tif", "OUTPUT_PROBABILITY": "image.tif"}, "OUTPUT_PROBABILITY would write .*, which is an "
                                                             "input"),
    ({"OUTPUT": "a.png"}, r"a.png ends in .png, but raster outputs are GeoTIFFs"),
])
def test_segment_refuses_unsafe_outputs_before_any_work(provider, scene, tmp_path, outputs,
                                                        message):
    image, model = scene
    before = _files(tmp_path)
    params = {"INPUT": str(image), "MODEL": str(model), "DEVICE": "cpu",
              **{k: str(tmp_path / v) for k, v in outputs.items()}}
    feedback = Recorder()
    with pytest.raises(QgsProcessingException, match=message):
        run("segment", params, feedback)
    assert _files(tmp_path) == before  # nothing overwritten, nothing left
    assert not any("Traceback" in t for t in feedback.texts)


def test_a_symlink_to_the_input_is_the_input(provider, scene, tmp_path):
    image, model = scene
    (tmp_path / "link.tif").symlink_to(image)
    with pytest.raises(QgsProcessingException, match="which is an input"):
        run("segment", {"INPUT": str(image), "MODEL": str(model),
                        "OUTPUT": str(tmp_path / "link.tif")})


def test_vectorize_and_evaluate_refuse_outputs_that_are_inputs(provider, tmp_path):
    classes = write_raster(tmp_path / "classes.tif", np.ones((1, 32, 32), np.uint8))
    with pytest.raises(QgsProcessingException, match="which is an input"):
        run("evaluate", {"PREDICTION": str(classes), "REFERENCE_RASTER": str(classes),
                         "OUTPUT_REPORT": str(classes)})
    assert classes.read_bytes()[:2] in (b"II", b"MM")


def test_a_damaged_raster_is_one_sentence(provider, scene, tmp_path):
    _, model = scene
    rng = np.random.default_rng(0)
    import rasterio
    from rasterio.transform import from_origin
    path = tmp_path / "whole.tif"
    with rasterio.open(path, "w", driver="GTiff", width=96, height=96, count=4, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(500000, 5000000, 0.5, 0.5),
                       tiled=True, blockxsize=32, blockysize=32, compress="deflate") as dst:
        dst.write(rng.integers(0, 255, (4, 96, 96), np.uint8))
    data = path.read_bytes()
    damaged = tmp_path / "damaged.tif"
    damaged.write_bytes(data[: len(data) * 2 // 3])
    feedback = Recorder()
    with pytest.raises(QgsProcessingException) as caught:
        run("segment", {"INPUT": str(damaged), "MODEL": str(model), "DEVICE": "cpu",
                        "OUTPUT": str(tmp_path / "out.tif")}, feedback)
    message = str(caught.value)
    assert "damaged.tif cannot be read at the pixel block x" in message
    assert "\n" not in message and "Traceback" not in message
    assert not any("Traceback" in t or "cannot be read" in t for t in feedback.texts)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.tif", "image.tif",
                                                          "unet.rsmodel", "whole.tif"]
