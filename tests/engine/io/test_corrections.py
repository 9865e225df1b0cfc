import pytest

from engine.io.corrections import (CLASS_FIELD, CORRECTIONS_LAYER, REVIEWED_LAYER,
                                   corrections_layer, create_corrections, read_layer)
from engine.io.vectors import layer_names
from engine.jobs import InputError, OutputError
from tests.engine.training.refine_helpers import box, corrections


def test_created_file_has_both_layers_and_refuses_to_overwrite(tmp_path):
    path = create_corrections(tmp_path / "c.gpkg", "EPSG:32633")
    assert sorted(layer_names(path)) == sorted([CORRECTIONS_LAYER, REVIEWED_LAYER])
    assert read_layer(path, CORRECTIONS_LAYER, "EPSG:32633", CLASS_FIELD) == []
    with pytest.raises(OutputError, match="exists already"):
        create_corrections(path, "EPSG:32633")


def test_features_come_back_in_the_asked_crs(tmp_path):
    path = corrections(tmp_path / "c.gpkg", [(box(0, 0, 10, 10), 2)], reviewed=[box(0, 0, 4, 4)])
    [f] = read_layer(path, corrections_layer(path), "EPSG:4326", CLASS_FIELD)
    assert f.value == 2 and f.fid == 1
    lon, lat = f.geometry["coordinates"][0][0][0]
    assert 14 < lon < 16 and 44 < lat < 46
    [r] = read_layer(path, REVIEWED_LAYER, "EPSG:32633")
    assert r.value is None


def test_a_file_with_other_layers_must_name_its_corrections(tmp_path):
    from osgeo import ogr
    path = tmp_path / "x.gpkg"
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    ds.CreateLayer("a", None, ogr.wkbPolygon)
    ds.CreateLayer("b", None, ogr.wkbPolygon)
    ds = None
    with pytest.raises(InputError, match="'corrections'"):
        corrections_layer(path)
