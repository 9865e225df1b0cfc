import numpy as np
import pytest
import rasterio

from engine.analysis.rounds import compare_rounds
from engine.io.rasters import class_colormap, class_tags
from engine.jobs import Cancelled, InputError
from tests.conftest import write_raster

CLASSES = [{"value": 1, "name": "field", "color": [0, 200, 0]},
           {"value": 2, "name": "road", "color": [90, 90, 90]}]


def _classes(path, data, **kw):
    write_raster(path, data[None].astype(np.uint8), nodata=255, **kw)
    with rasterio.open(path, "r+") as ds:
        ds.write_colormap(1, class_colormap(CLASSES))
        ds.update_tags(1, **class_tags(CLASSES))
    return path


def test_changed_area_pairs_and_difference_layer(tmp_path, rng):
    old = rng.integers(1, 3, (600, 70))
    new = old.copy()
    new[10:20, 5:15] = 3 - new[10:20, 5:15]   # 100 px flip
    new[550:560, :] = 2                         # spans a strip boundary
    old[0, 0] = 255                             # nodata is never a change
    new[0, 0] = 1
    a = _classes(tmp_path / "a.tif", old)
    b = _classes(tmp_path / "b.tif", new)
    result = compare_rounds(a, b, tmp_path / "d.tif")
    changed = (old != new) & (old != 255)
    assert result["changed_pixels"] == int(changed.sum())
    assert result["changed_m2"] == pytest.approx(changed.sum() * 0.25)
    assert result["changed_share"] == pytest.approx(changed.sum() / (old != 255).sum())
    one_two = int(((old == 1) & (new == 2)).sum())
    pairs = {(p["from_name"], p["to_name"]): p["pixels"] for p in result["pairs"]}
    assert pairs[("field", "road")] == one_two
    with rasterio.open(tmp_path / "d.tif") as d:
        diff = d.read(1)
        assert d.colormap(1)[2][:3] == (90, 90, 90)
    assert (diff[changed] == new[changed]).all() and (diff[~changed] == 255).all()


def test_other_grid_is_a_sentence_and_cancel_leaves_nothing(tmp_path, rng):
    a = _classes(tmp_path / "a.tif", rng.integers(1, 3, (40, 40)))
    b = _classes(tmp_path / "b.tif", rng.integers(1, 3, (40, 41)))
    with pytest.raises(InputError, match="same image"):
        compare_rounds(a, b, tmp_path / "d.tif")
    with pytest.raises(Cancelled):
        compare_rounds(a, a, tmp_path / "d.tif", cancelled=lambda: True)
    assert list(tmp_path.glob("d.tif*")) == [] and not list(tmp_path.glob(".d.tif*"))
