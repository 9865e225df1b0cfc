"""``--format cog``: Cloud-Optimized GeoTIFF outputs of predict (single and many) and change."""
import numpy as np
import pytest
import rasterio

import engine.io.cog
from engine.__main__ import main
from engine.inference.batch import predict_many
from engine.analysis.change import detect_change
from engine.inference.pipeline import predict
from engine.jobs import Cancelled, InputError
from tests.conftest import make_model, write_raster

validate = pytest.importorskip("osgeo_utils.samples.validate_cloud_optimized_geotiff").validate


def assert_cog(path):
    """A valid COG (GDAL's validator: no errors) with overviews and the COG layout."""
    errors = validate(str(path))[0]
    assert errors == []
    with rasterio.open(path) as ds:
        assert ds.profile["tiled"] and ds.overviews(1)
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"


@pytest.fixture
def scene(tmp_path, rng):
    # larger than one 256-pixel block, so GDAL builds overviews
    image = write_raster(tmp_path / "in.tif", rng.integers(0, 255, (3, 300, 520), dtype=np.uint8))
    model = make_model(tmp_path / "m.rsmodel", arch="test-pointwise", bands=3, classes=4,
                       tile=128, overlap=16)
    return image, model


def test_predict_cog_is_valid_with_the_same_pixels_colours_and_tags(tmp_path, scene):
    image, model = scene
    predict(model, image, tmp_path / "g.tif", probabilities=tmp_path / "gp.tif", device="cpu")
    predict(model, image, tmp_path / "c.tif", probabilities=tmp_path / "cp.tif", device="cpu",
            output_format="cog")
    for name in ("c.tif", "cp.tif"):
        assert_cog(tmp_path / name)
    for g, c in (("g.tif", "c.tif"), ("gp.tif", "cp.tif")):
        with rasterio.open(tmp_path / g) as a, rasterio.open(tmp_path / c) as b:
            assert (a.read() == b.read()).all()
            assert (a.crs, a.transform, a.nodata, a.descriptions, a.scales) == \
                (b.crs, b.transform, b.nodata, b.descriptions, b.scales)
            assert a.tags(1) == b.tags(1) and "RS_SEG_CLASSES" in b.tags(1)
            if g == "g.tif":
                assert a.colormap(1) == b.colormap(1)
    with rasterio.open(tmp_path / "c.tif") as classes, rasterio.open(tmp_path / "cp.tif") as p:
        assert classes.overviews(1)[0] == 2 and p.overviews(1)[0] == 2
        values = set(np.unique(classes.read(1)).tolist())
        # mode keeps class codes; average blends probabilities (a value no block holds)
        level = classes.read(1, out_shape=(150, 260))
        assert set(np.unique(level).tolist()) <= values
        full = p.read(1).astype(np.float64)
        half = p.read(1, out_shape=(150, 260)).astype(np.float64)
        mean = full.reshape(150, 2, 260, 2).mean(axis=(1, 3))
        assert np.abs(half - mean).max() <= 1.0


def test_many_inputs_as_cog(tmp_path, scene):
    image, model = scene
    result = predict_many(model, [image], tmp_path / "out", output_format="cog", device="cpu")
    assert_cog(result["written"][0]["output"])


def test_change_cog(tmp_path, scene, rng):
    image, _ = scene
    after = write_raster(tmp_path / "t2.tif", rng.integers(0, 255, (3, 300, 520), dtype=np.uint8))
    assert main(["change", "--model", "cva", "--t1", str(image), "--t2", str(after),
                 "--output", str(tmp_path / "ch.tif"), "--probabilities",
                 str(tmp_path / "chp.tif"), "--format", "cog", "--device", "cpu"]) == 0
    assert_cog(tmp_path / "ch.tif")
    assert_cog(tmp_path / "chp.tif")
    with rasterio.open(tmp_path / "ch.tif") as ds:
        assert ds.colormap(1)[1] == (230, 30, 30, 255) and ds.tags(1)["CLASS_1"] == "change"


def test_cancelled_or_failed_cog_run_leaves_no_files(tmp_path, scene, monkeypatch):
    image, model = scene
    before = sorted(p.name for p in tmp_path.iterdir())
    calls = []
    with pytest.raises(Cancelled):  # during the windows
        predict(model, image, tmp_path / "c.tif", probabilities=tmp_path / "cp.tif",
                device="cpu", output_format="cog", batch_size=1,
                cancelled=lambda: calls.append(1) or len(calls) > 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == before

    def interrupted(source, destination, resampling):  # during the conversion, half written
        destination.write_bytes(source.read_bytes()[:100])
        raise KeyboardInterrupt
    monkeypatch.setattr(engine.io.cog, "to_cog", interrupted)
    with pytest.raises(KeyboardInterrupt):
        predict(model, image, tmp_path / "c.tif", device="cpu", output_format="cog")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_unknown_format_is_a_sentence(tmp_path, scene):
    image, model = scene
    with pytest.raises(InputError, match="gtiff or cog"):
        predict(model, image, tmp_path / "c.tif", output_format="png")
