"""Re-predicting the current extent after a round (``engine.training.repredict``)."""
import numpy as np
import pytest
import rasterio

from engine.formats.modelfile import load_model, save_model
from engine.inference.pipeline import predict
from engine.jobs import InputError
from engine.training.repredict import extent_window, repredict
from tests.engine.training.refine_helpers import ORIGIN, RES, scene
from tests.conftest import make_model, write_raster

# columns 16..63, rows 8..39 of the 96² scene
EXTENT = (ORIGIN[0] + 16 * RES, ORIGIN[1] - 40 * RES, ORIGIN[0] + 64 * RES, ORIGIN[1] - 8 * RES)


def _rounds(tmp_path):
    image, parent = scene(tmp_path)
    # a per-pixel network: the same pixel normalised the same way gets the same output, so a
    # re-predicted extent must match a whole-image run exactly
    other = make_model(tmp_path / "next.rsmodel", arch="test-pointwise", bands=3, classes=3,
                       tile=32, overlap=8, seed=7)
    # each image normalised with its own statistics (the default of trained models)
    model = load_model(other)
    model.card["inputs"]["image"].update(normalisation="image", mean=[0.0] * 3, std=[1.0] * 3)
    save_model(other, model.card, model.network)
    pred, unsure = tmp_path / "p0.tif", tmp_path / "u0.tif"
    predict(parent, image, pred, uncertainty=unsure, device="cpu")
    return image, other, pred, unsure


def test_the_extent_is_re_predicted_inside_the_previous_rounds_rasters(tmp_path):
    image, model, pred, unsure = _rounds(tmp_path)
    result = repredict(model, image, tmp_path / "p1.tif", previous=pred,
                       difference=tmp_path / "d1.tif", uncertainty=tmp_path / "u1.tif",
                       device="cpu", bounds=EXTENT, previous_uncertainty=unsure)
    whole, whole_unsure = tmp_path / "whole.tif", tmp_path / "whole_u.tif"
    predict(model, image, whole, uncertainty=whole_unsure, device="cpu")
    read = lambda p: rasterio.open(p).read(1)  # noqa: E731
    old, new = read(pred), read(tmp_path / "p1.tif")
    inside = np.zeros(old.shape, bool)
    inside[8:40, 16:64] = True
    assert new.shape == old.shape and (new[~inside] == old[~inside]).all()
    assert (new[inside] == read(whole)[inside]).all() and len(np.unique(new[inside])) > 1
    # the extent is normalised with the whole image's statistics, not its own
    u1 = read(tmp_path / "u1.tif")
    assert (u1[inside] == read(whole_unsure)[inside]).all()
    assert (u1[~inside] == read(unsure)[~inside]).all()
    diff = read(tmp_path / "d1.tif")
    assert diff.shape == (32, 48)            # the difference covers the extent only
    changed = old[inside].reshape(32, 48) != new[inside].reshape(32, 48)
    assert result["compare"]["changed_pixels"] == int(changed.sum())
    assert (diff[changed] == new[8:40, 16:64][changed]).all() and (diff[~changed] == 255).all()
    assert result["compare"]["changed_share"] == pytest.approx(changed.mean())
    assert result["window"] == [16, 8, 48, 32]
    with rasterio.open(tmp_path / "p1.tif") as a, rasterio.open(pred) as b:
        assert a.transform == b.transform and a.colormap(1) == b.colormap(1)


def test_without_a_previous_round_the_output_covers_the_extent(tmp_path):
    image, model, _, _ = _rounds(tmp_path)
    repredict(model, image, tmp_path / "p1.tif", device="cpu", bounds=EXTENT)
    with rasterio.open(tmp_path / "p1.tif") as ds:
        assert (ds.width, ds.height) == (48, 32)
        assert ds.bounds.left == pytest.approx(EXTENT[0]) and ds.bounds.top == pytest.approx(EXTENT[3])


def test_an_extent_off_the_image_or_rasters_of_another_grid_are_sentences(tmp_path):
    image, model, pred, _ = _rounds(tmp_path)
    with pytest.raises(InputError, match="does not meet image.tif"):
        extent_window(image, (0.0, 0.0, 10.0, 10.0))
    small = write_raster(tmp_path / "small.tif", np.zeros((1, 10, 10), np.uint8), origin=ORIGIN, res=RES)
    with pytest.raises(InputError, match="not on the grid of image.tif"):
        repredict(model, image, tmp_path / "p1.tif", previous=small, device="cpu", bounds=EXTENT)
    assert not (tmp_path / "p1.tif").exists()
