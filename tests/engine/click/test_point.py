"""Click-to-segment: the region under a point matches whole-raster prediction, errors, cache."""
import os

import numpy as np
import pytest
import rasterio
from rasterio.features import rasterize, shapes
from shapely.geometry import Point, shape

from engine.inference.pipeline import PROBABILITY_SCALE, predict
from engine.jobs import Cancelled, InputError, ModelFileError
from engine.formats.modelfile import read_card
from engine.click.point import PredictionCache, segment_at, snapped_window
from tests.conftest import make_model, write_raster


@pytest.fixture
def scene(tmp_path, rng):
    """8×8-pixel blocks of noise through a random per-pixel network: class regions of many
    shapes and sizes."""
    blocks = rng.integers(0, 255, (4, 12, 12), dtype=np.uint8)
    image = write_raster(tmp_path / "in.tif", np.kron(blocks, np.ones((1, 8, 8), np.uint8)))
    model = make_model(tmp_path / "m.rsmodel", arch="test-pointwise", classes=3, tile=64,
                       overlap=16)
    return image, model


def map_xy(path, col, row):
    with rasterio.open(path) as ds:
        return ds.xy(row, col)


def region_from_prediction(classes, col, row):
    """The 4-connected region of ``classes`` holding pixel (col, row), as a boolean mask."""
    same = classes == classes[row, col]
    for g, _ in shapes(same.astype(np.uint8), mask=same, connectivity=4):
        if shape(g).contains(Point(col + 0.5, row + 0.5)):
            return rasterize([(shape(g), 1)], out_shape=same.shape, fill=0, dtype="uint8") > 0
    raise AssertionError("no region under the point")


def test_region_equals_the_whole_raster_prediction(tmp_path, scene):
    image, model = scene
    out, prob = tmp_path / "out.tif", tmp_path / "p.tif"
    predict(model, image, out, probabilities=prob, device="cpu")
    with rasterio.open(out) as o, rasterio.open(prob) as p:
        classes, probs, transform = o.read(1), p.read() / PROBABILITY_SCALE, o.transform
    col, row = 40, 50
    x, y = map_xy(image, col, row)
    # a window larger than the raster gives predict's own grid, hence identical scores
    r = segment_at(model, image, x, y, window=128, device="cpu")
    expected = region_from_prediction(classes, col, row)
    assert 64 <= expected.sum() < classes.size  # a real region, not the whole raster
    assert r["class_value"] == classes[row, col]
    assert r["area_m2"] == pytest.approx(expected.sum() * 0.25)  # 0.5 m pixels
    assert r["geometry"].area == pytest.approx(expected.sum() * 0.25)
    assert r["geometry"].contains(Point(x, y))
    got = rasterize([(r["geometry"], 1)], out_shape=classes.shape, transform=transform) > 0
    assert (got == expected).all()
    index = [c["value"] for c in read_card(model)["classes"]].index(r["class_value"])
    confidence = probs[index][expected].mean()
    assert r["confidence"] == pytest.approx(confidence, abs=1 / PROBABILITY_SCALE)
    assert r["window"] == (0, 0, 96, 96) and not r["truncated"] and not r["cached"]
    assert "32633" in r["crs_wkt"] or "UTM zone 33N" in r["crs_wkt"]
    assert r["class_name"] == read_card(model)["classes"][index]["name"]


def test_region_cut_by_the_window_is_flagged_truncated(tmp_path, scene):
    _, model = scene
    flat = write_raster(tmp_path / "flat.tif", np.full((4, 96, 96), 90, np.uint8))
    x, y = map_xy(flat, 50, 50)
    cut = segment_at(model, flat, x, y, window=32, device="cpu")
    assert cut["truncated"] and cut["area_m2"] == 32 * 32 * 0.25
    whole = segment_at(model, flat, x, y, window=128, device="cpu")
    assert not whole["truncated"] and whole["area_m2"] == 96 * 96 * 0.25


def test_window_is_snapped_to_half_window_steps_and_clipped():
    w = snapped_window(300, 300, 256, 1000, 800)
    assert (w.col_off, w.row_off, w.width, w.height) == (128, 128, 256, 256)
    assert snapped_window(310, 290, 256, 1000, 800) == w  # nearby clicks share the window
    edge = snapped_window(990, 5, 256, 1000, 800)
    assert (edge.col_off, edge.row_off) == (744, 0)
    small = snapped_window(10, 10, 256, 100, 60)
    assert (small.col_off, small.row_off, small.width, small.height) == (0, 0, 100, 60)


def test_cache_reuses_the_window_of_a_nearby_click(scene):
    image, model = scene
    cache = PredictionCache(size=1)
    first = segment_at(model, image, *map_xy(image, 20, 20), window=64, device="cpu", cache=cache)
    again = segment_at(model, image, *map_xy(image, 22, 21), window=64, device="cpu", cache=cache)
    assert not first["cached"] and again["cached"] and first["window"] == again["window"]
    assert len(cache) == 1
    far = segment_at(model, image, *map_xy(image, 90, 90), window=64, device="cpu", cache=cache)
    assert not far["cached"] and len(cache) == 1  # least recently used window dropped
    stat = os.stat(image)
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the raster was edited
    edited = segment_at(model, image, *map_xy(image, 90, 90), window=64, device="cpu", cache=cache)
    assert not edited["cached"]


def test_point_outside_raster_or_on_nodata_is_a_clear_error(tmp_path, scene):
    image, model = scene
    with pytest.raises(InputError, match="outside in.tif"):
        segment_at(model, image, 0.0, 0.0, device="cpu")
    data = np.full((4, 40, 40), 7, np.uint8)
    data[:, :10] = 0
    holed = write_raster(tmp_path / "holed.tif", data, nodata=0)
    with pytest.raises(InputError, match="no data under the point"):
        segment_at(model, holed, *map_xy(holed, 2, 2), device="cpu")


def test_change_model_and_cancel(tmp_path, scene):
    image, model = scene
    x, y = map_xy(image, 10, 10)
    with pytest.raises(Cancelled):
        segment_at(model, image, x, y, device="cpu", cancelled=lambda: True)
    change = make_model(tmp_path / "c.rsmodel", arch="fcsiamdiff", bands=4, classes=2,
                        base=4, depth=2)
    with pytest.raises(ModelFileError, match="click-to-segment needs a segmentation model"):
        segment_at(change, image, x, y, device="cpu")
