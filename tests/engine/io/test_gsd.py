import math

import numpy as np
import pytest
import rasterio
from rasterio import Affine

from engine.io.gsd import MAX_RATIO, ground_pixel_size, plan_gsd, raster_gsd
from engine.jobs import InputError
from tests.conftest import write_raster


def _raster(tmp_path, crs="EPSG:32633", res=0.5, origin=(500000.0, 5000000.0), name="r.tif"):
    return write_raster(tmp_path / name, np.zeros((1, 8, 8), np.uint8), crs=crs, origin=origin,
                        res=res)


def _ground(ds) -> float:
    return ground_pixel_size(ds.crs, ds.transform, ds.width, ds.height)


def _geodesic_gsd(ds) -> float:
    """An independent reference: PROJ's geodesic lengths of the centre pixel's two steps."""
    pyproj = pytest.importorskip("pyproj")
    from rasterio.warp import transform
    cx, cy = ds.width / 2, ds.height / 2
    xs, ys = zip(*(ds.transform * p for p in ((cx, cy), (cx + 1, cy), (cx, cy + 1))))
    lons, lats = transform(ds.crs, "EPSG:4326", list(xs), list(ys))
    geod = pyproj.Geod(ellps="WGS84")
    steps = [geod.inv(lons[0], lats[0], lons[i], lats[i])[2] for i in (1, 2)]
    return math.sqrt(steps[0] * steps[1])


def test_gsd_of_utm_raster_is_its_ground_size(tmp_path):
    # on the central meridian UTM's scale factor is 0.9996: a 0.5 m pixel is 0.5002 m on the ground
    with rasterio.open(_raster(tmp_path, res=0.5)) as ds:
        assert _ground(ds) == pytest.approx(0.5 / 0.9996, rel=1e-5)
        assert _ground(ds) == pytest.approx(_geodesic_gsd(ds), rel=1e-6)
        assert raster_gsd(ds) == 0.5  # to 3 significant digits


def test_gsd_of_projected_raster_in_feet_is_converted_to_metres(tmp_path):
    # EPSG:2227 (California zone 3) is in US survey feet
    with rasterio.open(_raster(tmp_path, crs="EPSG:2227", res=2.0, origin=(6e6, 2e6))) as ds:
        assert raster_gsd(ds) == pytest.approx(2.0 * 1200 / 3937, rel=1e-3)
        assert _ground(ds) == pytest.approx(_geodesic_gsd(ds), rel=1e-6)


def test_gsd_of_web_mercator_is_measured_on_the_ground(tmp_path):
    # y of 54° N in EPSG:3857; a 2.0 m pixel there is about 1.18 m on the ground
    y = 6_378_137.0 * math.log(math.tan(math.pi / 4 + math.radians(54) / 2))
    with rasterio.open(_raster(tmp_path, crs="EPSG:3857", res=2.0, origin=(1.1e6, y + 8))) as ds:
        assert raster_gsd(ds) == 1.18
        assert _ground(ds) == pytest.approx(2.0 * math.cos(math.radians(54)), rel=5e-3)
        assert _ground(ds) == pytest.approx(_geodesic_gsd(ds), rel=1e-6)
        plan = plan_gsd(ds, 1.2)  # a 1.2 m model reads it as it is (ground sizes agree)
        assert not plan.resampled


@pytest.mark.parametrize("lat", [0.0, 45.0, 60.0])
def test_gsd_of_geographic_raster_is_converted_at_its_latitude(tmp_path, lat):
    res = 1e-5
    with rasterio.open(_raster(tmp_path, crs="EPSG:4326", res=res, origin=(10.0, lat + 4e-5))) as ds:
        metres_per_degree = math.pi / 180 * 6_371_008.8
        centre = math.radians(lat)  # the raster spans 8e-5° around lat
        expected = res * metres_per_degree * math.sqrt(math.cos(centre))
        assert raster_gsd(ds) == pytest.approx(expected, rel=1e-2)  # a sphere is close
        assert _ground(ds) == pytest.approx(_geodesic_gsd(ds), rel=1e-6)


def test_raster_without_georeferencing_has_no_gsd(tmp_path):
    path = tmp_path / "plain.tif"
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8") as d:
        d.write(np.zeros((1, 8, 8), np.uint8))
    with rasterio.open(path) as ds:
        assert raster_gsd(ds) is None
        with pytest.raises(InputError, match="--input-gsd"):
            plan_gsd(ds, 0.5, "auto")
        assert not plan_gsd(ds, 0.5, "native").resampled
        assert plan_gsd(ds, 0.5, "auto", input_gsd=1.5).scale == pytest.approx(3.0)


class _CrsWithoutUnits:
    """What a damaged header can decode to: a CRS neither on the Earth nor in a linear unit."""

    @property
    def linear_units_factor(self):
        from rasterio.errors import CRSError
        raise CRSError("Linear units factor is not defined for non projected CRS")


def test_a_crs_with_neither_earth_nor_unit_gives_no_gsd():
    # found by the damaged-GeoTIFF fuzz test: predict raised CRSError from inside the GSD plan
    assert math.isnan(ground_pixel_size(_CrsWithoutUnits(), Affine(0.5, 0, 0, 0, -0.5, 0), 8, 8))


def test_plan_resamples_only_beyond_tolerance(tmp_path):
    with rasterio.open(_raster(tmp_path, res=0.6)) as ds:
        assert not plan_gsd(ds, 0.5).resampled  # 20 % apart: read as it is
    with rasterio.open(_raster(tmp_path, res=1.5, name="c.tif")) as ds:
        plan = plan_gsd(ds, 0.5)
        assert plan.scale == pytest.approx(3.0)
        assert plan.describe() == ("this image is 3.0× coarser than the model's training data "
                                   "(1.5 m vs 0.5 m); resampling to 0.5 m")
        native = plan_gsd(ds, 0.5, "native")
        assert not native.resampled and "--gsd native" in native.describe()
        assert plan_gsd(ds, 0.5, "0.75").scale == pytest.approx(2.0)


def test_plan_refuses_ratios_beyond_the_limit(tmp_path):
    with rasterio.open(_raster(tmp_path, res=0.5 * (MAX_RATIO + 1))) as ds:
        with pytest.raises(InputError, match="8×.*gdalwarp"):
            plan_gsd(ds, 0.5)
        assert not plan_gsd(ds, 0.5, "native").resampled
    with rasterio.open(_raster(tmp_path, res=0.5, name="f.tif")) as ds:
        with pytest.raises(InputError, match="finer"):
            plan_gsd(ds, 0.5 * (MAX_RATIO + 1))


def test_plan_without_model_gsd_reads_as_is(tmp_path):
    with rasterio.open(_raster(tmp_path, res=3.0)) as ds:
        assert not plan_gsd(ds, None).resampled
        with pytest.raises(InputError, match="auto, native or a number"):
            plan_gsd(ds, 0.5, "coarse")
