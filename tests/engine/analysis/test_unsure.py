import numpy as np
import pytest

from engine.analysis.unsure import unsure_places
from engine.inference.uncertainty import NODATA
from engine.jobs import InputError
from tests.conftest import write_raster


def _raster(tmp_path, data):
    return write_raster(tmp_path / "u.tif", data[None].astype(np.uint8), nodata=NODATA,
                        origin=(0.0, 256.0), res=1.0)


def test_ranks_the_most_unsure_cells_first(tmp_path, rng):
    data = rng.integers(0, 40, (256, 256))
    data[64:128, 128:192] = 200          # the most unsure cell
    data[0:64, 0:64] = 120               # the second
    data[192:256, 192:256] = NODATA      # no data: never a place
    places = unsure_places(_raster(tmp_path, data), count=3, cell_px=64)
    assert [p.window for p in places[:2]] == [(128, 64, 64, 64), (0, 0, 64, 64)]
    assert places[0].bounds == (128.0, 128.0, 192.0, 192.0)
    assert places[0].uncertainty == pytest.approx(200 / 254)
    assert [p.rank for p in places] == [1, 2, 3]
    assert all(p.window != (192, 192, 64, 64) for p in places)


def test_extent_and_reviewed_places_narrow_the_list(tmp_path, rng):
    data = rng.integers(0, 40, (256, 256))
    data[64:128, 128:192] = 200
    data[0:64, 0:64] = 120
    path = _raster(tmp_path, data)
    # the map extent covers the left half only
    assert unsure_places(path, bounds=(0, 0, 128, 256), count=1, cell_px=64)[0].window == \
        (0, 0, 64, 64)
    # the top place was reviewed: the second comes first
    first = unsure_places(path, count=1, cell_px=64)[0]
    assert unsure_places(path, count=1, cell_px=64, exclude=[first.bounds])[0].window == \
        (0, 0, 64, 64)
    assert unsure_places(path, bounds=(1000, 1000, 2000, 2000)) == []


def test_large_rasters_are_read_decimated(tmp_path, rng, monkeypatch):
    import engine.analysis.unsure as unsure
    monkeypatch.setattr(unsure, "MAX_READ", 64)
    data = rng.integers(0, 40, (256, 256))
    data[128:192, 64:128] = 250
    top = unsure_places(_raster(tmp_path, data), count=1, cell_px=64)[0]
    assert top.window == (64, 128, 64, 64) and top.uncertainty > 0.9


def test_bad_count(tmp_path, rng):
    with pytest.raises(InputError, match="at least 1"):
        unsure_places(_raster(tmp_path, rng.integers(0, 9, (8, 8))), count=0)


def test_the_places_spread_out_of_a_cluster(tmp_path, rng):
    data = rng.integers(0, 40, (256, 256))
    data[0:128, 0:128] = 200             # four unsure cells side by side (a cluster)
    data[0:64, 0:64] = 210
    data[192:256, 192:256] = 150         # a less unsure cell far from them
    path = _raster(tmp_path, data)
    plain = unsure_places(path, count=2, cell_px=64, spread=0)
    assert plain[0].window == (0, 0, 64, 64) and plain[1].window[:2] in {(64, 0), (0, 64), (64, 64)}
    spread = unsure_places(path, count=2, cell_px=64)
    assert [p.window[:2] for p in spread] == [(0, 0), (192, 192)]
    # once the far places are listed the neighbours come back, still by uncertainty
    every = unsure_places(path, count=16, cell_px=64)
    assert len(every) == 16 and len({p.window for p in every}) == 16
    assert {p.window[:2] for p in every[:5]} >= {(0, 0), (192, 192)}


def test_the_places_mix_the_predicted_classes(tmp_path, rng):
    data = rng.integers(0, 40, (256, 256))
    classes = np.ones((256, 256), np.uint8)
    data[0:64, 0:64], data[0:64, 128:192], data[128:192, 0:64] = 200, 195, 190   # class 1
    data[192:256, 192:256], classes[192:256, 192:256] = 160, 2                    # class 2
    path = _raster(tmp_path, data)
    pred = write_raster(tmp_path / "c.tif", classes[None], nodata=255, origin=(0.0, 256.0),
                        res=1.0)
    assert [p.window[:2] for p in unsure_places(path, count=2, cell_px=64)] == [(0, 0), (128, 0)]
    mixed = unsure_places(path, count=2, cell_px=64, prediction=pred)
    assert [p.window[:2] for p in mixed] == [(0, 0), (192, 192)]
    assert mixed[1].uncertainty == pytest.approx(160 / 254)
    other = write_raster(tmp_path / "o.tif", classes[None, :128], nodata=255,
                         origin=(0.0, 256.0), res=1.0)
    with pytest.raises(InputError, match="not on the grid"):
        unsure_places(path, prediction=other)


def test_reviewed_places_do_not_push_their_neighbours_away(tmp_path, rng):
    data = rng.integers(0, 40, (256, 256))
    data[0:64, 0:64], data[0:64, 64:128], data[192:256, 192:256] = 220, 200, 150
    path = _raster(tmp_path, data)
    first = unsure_places(path, count=1, cell_px=64)[0]
    assert unsure_places(path, count=1, cell_px=64, exclude=[first.bounds])[0].window[:2] == \
        (64, 0)


def test_exploring_places_go_where_nothing_was_checked(tmp_path, rng):
    data = rng.integers(0, 40, (256, 256))
    data[0:64, 0:128] = 200              # unsure on the top left
    data[192:256, 0:64] = 150
    path = _raster(tmp_path, data)
    reviewed = [unsure_places(path, count=1, cell_px=64, spread=0)[0].bounds]   # (0, 0)
    plain = unsure_places(path, count=2, cell_px=64, exclude=reviewed, spread=0)
    assert [p.window[:2] for p in plain] == [(64, 0), (0, 192)]
    mixed = unsure_places(path, count=2, cell_px=64, exclude=reviewed, spread=0, explore=0.5)
    # the first is still the most unsure; the second the cell farthest from both
    assert [p.window[:2] for p in mixed] == [(64, 0), (192, 192)]
    with pytest.raises(InputError, match="0 to 1"):
        unsure_places(path, explore=2)


def test_places_are_shared_among_what_the_image_holds(tmp_path, rng):
    # a model sure (and wrong) over the dark three quarters, unsure on the bright quarter
    data = rng.integers(0, 40, (256, 256))
    data[:, 192:] = rng.integers(150, 250, (256, 64))
    data[64:128, 64:128] = 100                                 # the dark part's most unsure
    image = np.full((3, 256, 256), 30, np.uint8)
    image[:, :, 192:] = 200
    path = _raster(tmp_path, data)
    img = write_raster(tmp_path / "i.tif", image, origin=(0.0, 256.0), res=1.0)
    plain = unsure_places(path, count=4, cell_px=64, spread=0)
    assert all(p.window[0] == 192 for p in plain)              # all four on the bright quarter
    shared = unsure_places(path, count=4, cell_px=64, spread=0, image=img)
    dark = [p.window[:2] for p in shared if p.window[0] < 192]
    assert len(dark) == 3 and dark[0] == (64, 64)              # its share, its most unsure first
    other = write_raster(tmp_path / "o.tif", image[:, :128], origin=(0.0, 256.0), res=1.0)
    with pytest.raises(InputError, match="not on the grid"):
        unsure_places(path, image=other)


def test_cells_the_corrections_cover_are_left_out(tmp_path, rng):
    data = rng.integers(0, 40, (256, 256))
    data[64:128, 128:192] = 200
    data[0:64, 0:64] = 120
    path = _raster(tmp_path, data)

    def square(col0, row0, col1, row1):  # pixel box → GeoJSON on the raster (origin 0, 256)
        ring = [(col0, 256 - row0), (col1, 256 - row0), (col1, 256 - row1), (col0, 256 - row1)]
        return {"type": "Polygon", "coordinates": [ring + ring[:1]]}

    # a quarter of the top cell is corrected: it was checked
    top = unsure_places(path, count=1, cell_px=64, corrected=[square(128, 64, 160, 96)])
    assert top[0].window == (0, 0, 64, 64)
    # a sliver of it is not enough
    top = unsure_places(path, count=1, cell_px=64, corrected=[square(128, 64, 136, 96)])
    assert top[0].window == (128, 64, 64, 64)
