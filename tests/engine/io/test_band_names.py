"""Bands matched by name (descriptions, colour interpretations, aliases) or a hint computed
from the real counts."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp

from engine.io.band_names import canonical
from engine.io.rasters import match_bands, resolve_bands
from engine.jobs import InputError
from tests.conftest import write_raster


def bands(*names):
    return [{"index": i + 1, "name": n} for i, n in enumerate(names)]


def raster(tmp_path, count, descriptions=None, interp=None, dtype="uint16", name="r.tif"):
    path = write_raster(tmp_path / name, np.ones((count, 8, 8), dtype))
    with rasterio.open(path, "r+") as ds:
        for i, d in enumerate(descriptions or [], start=1):
            ds.set_band_description(i, d)
        if interp:
            ds.colorinterp = interp
    return rasterio.open(path)


def test_aliases():
    assert canonical("B02") == canonical("blue") == canonical(" Blue ") == "blue"
    assert canonical("B08") == canonical("NIR") == canonical("near_infrared") == "nir"
    assert canonical("B11") == canonical("swir16") == canonical("SWIR1") == "swir16"
    assert canonical("B8A") == "nir08" and canonical("R") == "red"
    assert canonical("B2") is None and canonical("class 1") is None  # RS Seg's generic names


def test_sentinel2_file_reordered_by_name_with_a_note(tmp_path):
    s2 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
    with raster(tmp_path, 11, s2) as ds:
        idx, note = match_bands(ds, bands("red", "green", "blue", "nir"))
        assert idx == [4, 3, 2, 8]
        assert note == ("bands matched by name: red ← band 4 (B04), green ← band 3 (B03), "
                        "blue ← band 2 (B02), nir ← band 8 (B08)")
        with pytest.raises(InputError, match=r"the model needs bands B02, B10; the input has "
                                             r"B01, B02.*B12: B10 is missing"):
            resolve_bands(ds, bands("B02", "B10"))
        assert match_bands(ds, bands("R", "G", "B"), chosen=[1, 2, 3]) == ([1, 2, 3], None)


def test_colour_interpretation_and_identity(tmp_path):
    bgr = [ColorInterp.blue, ColorInterp.green, ColorInterp.red]
    with raster(tmp_path, 3, interp=bgr, dtype="uint8") as ds:
        idx, note = match_bands(ds, bands("R", "G", "B"))
        assert idx == [3, 2, 1] and "R ← band 3 (red)" in note
    rgba = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    with raster(tmp_path, 4, interp=rgba, dtype="uint8", name="rgba.tif") as ds:
        assert match_bands(ds, bands("R", "G", "B")) == ([1, 2, 3], None)


def test_without_names_the_counts_decide(tmp_path):
    with raster(tmp_path, 4, name="four.tif") as ds:   # gray + undefined: no names
        assert match_bands(ds, bands("R", "G", "B", "NIR")) == ([1, 2, 3, 4], None)
    with raster(tmp_path, 11, name="eleven.tif") as ds, \
            pytest.raises(InputError, match=r"model expects 3 bands \(R,G,B\); the input has 11 "
                                            r"data band\(s\)\. Pick 3 of its 11 bands .*--bands "
                                            r"1,2,3"):
        resolve_bands(ds, bands("R", "G", "B"))
    with raster(tmp_path, 1, name="one.tif") as ds, \
            pytest.raises(InputError, match=r"has 1 data band\(s\)\. .*--bands 1,1,1"):
        resolve_bands(ds, bands("R", "G", "B"))
    with raster(tmp_path, 2, name="two.tif") as ds, \
            pytest.raises(InputError, match="Give an image with the model's 4 bands or use a "
                                            "model trained on 2-band imagery"):
        resolve_bands(ds, bands("R", "G", "B", "NIR"))
