import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from engine.io.crop import crop_vrt
from engine.jobs import InputError
from tests.conftest import write_raster


def test_a_window_as_a_vrt_on_the_image_grid(tmp_path, rng):
    data = rng.integers(0, 255, (3, 40, 50)).astype(np.uint8)
    image = write_raster(tmp_path / "image.tif", data)
    vrt = crop_vrt(image, Window(10, 5, 20, 30), tmp_path / "crop.vrt")
    with rasterio.open(image) as full, rasterio.open(vrt) as crop:
        assert (crop.width, crop.height) == (20, 30)
        assert (crop.read() == data[:, 5:35, 10:30]).all()
        assert crop.transform == full.window_transform(Window(10, 5, 20, 30))


def test_an_unreadable_raster_is_a_sentence(tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a raster")
    with pytest.raises(InputError, match="cannot read"):
        crop_vrt(bad, Window(0, 0, 1, 1), tmp_path / "c.vrt")
