"""``rs_seg:segment_folder`` through processing.run, and FORMAT on ``segment``."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from qgis.core import QgsProcessingException

from tests.conftest import make_model, write_raster

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(3)
    images = root / "images"
    images.mkdir()
    for name in ("a", "b"):
        write_raster(images / f"{name}.tif", rng.integers(0, 255, (4, 80, 96), dtype=np.uint8))
    (images / "readme.txt").write_text("not a raster")
    model = make_model(root / "unet.rsmodel", base=4, depth=2, tile=64, overlap=16)
    return images, model


def run(alg, params):
    import processing
    return processing.run(f"rs_seg:{alg}", params)


def test_segment_folder_writes_one_output_per_raster_then_skips_existing(provider, folder,
                                                                         tmp_path):
    images, model = folder
    out = tmp_path / "out"
    params = {"INPUT_FOLDER": str(images), "MODEL": str(model), "DEVICE": "cpu",
              "OUTPUT_NAME": "{stem}_classes.tif", "OUTPUT_FOLDER": str(out)}
    result = run("segment_folder", params)
    assert (result["WRITTEN"], result["FAILED"], result["SKIPPED"]) == (2, 0, 0)
    assert result["OUTPUT_FOLDER"] == str(out)
    assert sorted(p.name for p in out.iterdir()) == ["a_classes.tif", "b_classes.tif"]
    with rasterio.open(out / "a_classes.tif") as ds:
        assert ds.shape == (80, 96) and "RS_SEG_CLASSES" in ds.tags(1)
    with pytest.raises(QgsProcessingException, match="already exists.*SKIP_EXISTING"):
        run("segment_folder", params)
    result = run("segment_folder", {**params, "SKIP_EXISTING": True})
    assert (result["WRITTEN"], result["SKIPPED"]) == (0, 2)


def test_segment_folder_from_a_list_as_cog(provider, folder, tmp_path):
    images, model = folder
    listing = tmp_path / "list.txt"
    listing.write_text(f"# one raster\n{images / 'b.tif'}\n")
    result = run("segment_folder", {"INPUT_LIST": str(listing), "MODEL": str(model),
                                    "DEVICE": "cpu", "FORMAT": "cog",
                                    "OUTPUT_FOLDER": str(tmp_path / "cog")})
    assert result["WRITTEN"] == 1
    with rasterio.open(tmp_path / "cog" / "b.tif") as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"


def test_segment_with_format_cog(provider, folder, tmp_path):
    images, model = folder
    out = tmp_path / "classes.tif"
    run("segment", {"INPUT": str(images / "a.tif"), "MODEL": str(model), "DEVICE": "cpu",
                    "FORMAT": "cog", "OUTPUT": str(out)})
    with rasterio.open(out) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and ds.colormap(1)
