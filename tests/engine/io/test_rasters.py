"""Damaged rasters: whatever the damage, reading ends in a correct output or one sentence naming
the file and the pixel block, never a traceback and never a file left behind."""
from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from hypothesis import HealthCheck, example, given, settings, strategies as st
from rasterio.transform import from_origin

from engine.__main__ import main
from engine.io.rasters import WindowReader, open_raster
from engine.jobs import InputError
from tests.conftest import make_model


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A small tiled, compressed GeoTIFF (16 blocks of 32×32) and a pointwise model for it."""
    folder = tmp_path_factory.mktemp("damage")
    path = folder / "clean.tif"
    rng = np.random.default_rng(5)
    with rasterio.open(path, "w", driver="GTiff", width=128, height=128, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(500000, 5000000, 0.5, 0.5),
                       tiled=True, blockxsize=32, blockysize=32, compress="deflate") as dst:
        dst.write(rng.integers(0, 255, (3, 128, 128), np.uint8))
    model = make_model(folder / "m.rsmodel", arch="test-pointwise", bands=3, classes=3, tile=64,
                       overlap=8)
    return path.read_bytes(), model


def _damage(data: bytes, cut: float, flips: list) -> bytes:
    out = bytearray(data[: max(1, int(len(data) * cut))])
    for where, mask in flips:  # a byte of the header (an int) or anywhere (a fraction)
        i = min(where, len(out) - 1) if isinstance(where, int) else int(where * (len(out) - 1))
        out[i] ^= mask
    return bytes(out)


HEADER_BYTES = 700  # the TIFF header and first directory of the file below


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.one_of(st.just(1.0), st.floats(0.0, 1.0)),
       flips=st.lists(st.tuples(st.one_of(st.integers(0, HEADER_BYTES - 1), st.floats(0.0, 1.0)),
                                st.integers(1, 255)), max_size=6))
@example(cut=1.0, flips=[(453, 1)])  # a CRS key flipped to one with neither datum nor unit
def test_damaged_geotiff_gives_an_output_or_one_sentence(clean, cut, flips):
    data, model = clean
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        damaged, out = folder / "damaged.tif", folder / "out.tif"
        damaged.write_bytes(_damage(data, cut, flips))
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["predict", "--model", str(model), "--input", str(damaged), "--output",
                         str(out), "--device", "cpu", "--gsd", "native"])
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        if code == 0:
            with rasterio.open(out) as ds:
                assert ds.read(1).shape == (128, 128)
            assert sorted(p.name for p in folder.iterdir()) == ["damaged.tif", "out.tif"]
        else:
            assert code == 2, err.getvalue()
            # one sentence, last (lines before it are the run's log), never a traceback
            assert [x for x in lines if x.startswith("error: ")] == lines[-1:], err.getvalue()
            assert "Traceback" not in err.getvalue() and "damaged.tif" in lines[-1]
            assert sorted(p.name for p in folder.iterdir()) == ["damaged.tif"]


def test_a_block_that_cannot_be_read_is_named_in_pixels(clean, tmp_path):
    data, _ = clean
    path = tmp_path / "cut.tif"
    path.write_bytes(data[: len(data) // 2])
    with open_raster(path) as ds:
        reader = WindowReader(ds, [1, 2, 3])
        reader.read(0, 0, 32)  # the first blocks are whole
        with pytest.raises(InputError, match=r"cut.tif cannot be read at the pixel block x \d+–\d+, "
                                             r"y \d+–\d+ .*damaged or truncated"):
            for y in range(0, 128, 32):
                for x in range(0, 128, 32):
                    reader.read(x, y, 32)


def test_inference_says_when_a_band_flagged_alpha_is_a_mask_or_data(tmp_path):
    from rasterio.enums import ColorInterp
    from engine.inference.pipeline import predict
    from tests.conftest import write_raster
    rng = np.random.default_rng(1)
    path = write_raster(tmp_path / "rgba.tif", rng.integers(1, 255, (4, 64, 64), np.uint8),
                        photometric="RGB")
    with rasterio.open(path, "r+") as ds:
        ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    three = make_model(tmp_path / "m3.rsmodel", arch="test-pointwise", bands=3, classes=2,
                       tile=32, overlap=8)
    four = make_model(tmp_path / "m4.rsmodel", arch="test-pointwise", bands=4, classes=2,
                      tile=32, overlap=8)
    masked = predict(three, path, tmp_path / "a.tif", device="cpu")["notes"]
    assert any("band 4 is flagged as alpha, so it is used as a mask" in n and
               "--bands 1,2,3,4" in n for n in masked)
    as_data = predict(four, path, tmp_path / "b.tif", device="cpu")["notes"]
    assert any("band 4 is flagged as alpha but read as data" in n for n in as_data)
