"""Layer → file resolution: file layers pass through, extents clip on the pixel grid, other
layers are rendered to a GeoTIFF."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from osgeo import gdal
from qgis.core import (QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback,
                       QgsRasterLayer, QgsRectangle)

from rs_seg_qgis import sources
from tests.conftest import write_raster

pytestmark = pytest.mark.qgis


@pytest.fixture
def image(tmp_path):
    data = np.arange(3 * 40 * 60, dtype=np.uint16).reshape(3, 40, 60)
    return write_raster(tmp_path / "image.tif", data)  # 0.5 m pixels from (500000, 5000000)


def test_file_layers_are_used_in_place(qgis_app, image):
    layer = QgsRasterLayer(str(image), "image")
    assert sources.gdal_file(layer) == str(image)
    assert sources.raster_path(layer, QgsProcessingContext()) == str(image)
    with_options = QgsRasterLayer(f"{image}|option:NUM_THREADS=1", "opt", "gdal")
    assert with_options.isValid() and sources.gdal_file(with_options) is None


def test_extent_clips_whole_pixels_through_a_vrt(qgis_app, image):
    layer = QgsRasterLayer(str(image), "image")
    # x 500002.2..500010.1, y 4999990.3..4999995.4 → columns 4..20, rows 9..19
    area = QgsRectangle(500002.2, 4999990.3, 500010.1, 4999995.4)
    vrt = sources.raster_path(layer, QgsProcessingContext(), extent=area)
    assert vrt.endswith(".vrt")
    with rasterio.open(vrt) as clip, rasterio.open(image) as full:
        assert (clip.read() == full.read()[:, 9:20, 4:21]).all()
        assert clip.transform.c == 500002.0 and clip.transform.f == 4999995.5
    assert sources.raster_path(layer, QgsProcessingContext(),
                               extent=QgsRectangle(0, 0, 1e7, 1e7)) == str(image)
    with pytest.raises(QgsProcessingException, match="does not overlap"):
        sources.raster_path(layer, QgsProcessingContext(), extent=QgsRectangle(0, 0, 10, 10))


def test_non_file_layer_is_rendered_at_the_model_resolution(qgis_app, image, tmp_path):
    data = gdal.Translate("/vsimem/rs_seg_test.tif", str(image))
    data = None  # flush
    layer = QgsRasterLayer("/vsimem/rs_seg_test.tif", "in memory")
    assert layer.isValid() and sources.gdal_file(layer) is None
    same = sources.raster_path(layer, QgsProcessingContext(), QgsProcessingFeedback())
    coarse = sources.raster_path(layer, QgsProcessingContext(), gsd_m=1.0)
    gdal.Unlink("/vsimem/rs_seg_test.tif")
    with rasterio.open(same) as a, rasterio.open(image) as ref:
        assert (a.read() == ref.read()).all() and a.transform == ref.transform
    with rasterio.open(coarse) as c:
        assert c.shape == (20, 30) and c.res == (1.0, 1.0)


def test_export_honours_cancel_and_leaves_nothing(qgis_app, image, tmp_path):
    layer = QgsRasterLayer(str(image), "image")
    feedback = QgsProcessingFeedback()
    feedback.cancel()
    target = tmp_path / "never.tif"
    with pytest.raises(QgsProcessingException, match="cancelled"):
        sources.export_raster(layer, str(target), layer.extent(), 0.5, QgsProcessingContext(),
                              feedback)
    assert not target.exists()
