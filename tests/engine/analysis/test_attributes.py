"""Per-polygon attributes: mean/min class probability streamed across blocks, provenance."""
from __future__ import annotations

import datetime as dt
import hashlib
import json

import numpy as np
import pytest
import rasterio
from osgeo import ogr
from rasterio.transform import from_origin
from scipy import ndimage

from engine import __version__
from engine.analysis.vectorize import vectorize
from engine.jobs import InputError
from tests.conftest import make_model

TRANSFORM = from_origin(600000.0, 5000000.0, 0.5, 0.5)
CLASSES = [{"value": 1, "name": "ground", "color": [9, 9, 9]},
           {"value": 4, "name": "tree", "color": [0, 99, 0]}]


def write(path, arr, nodata, tags=True):
    arr = arr if arr.ndim == 3 else arr[None]
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1],
                       count=arr.shape[0], dtype="uint8", crs="EPSG:32633",
                       transform=TRANSFORM, nodata=nodata) as dst:
        dst.write(arr)
        if tags:
            dst.update_tags(1, RS_SEG_CLASSES=json.dumps(CLASSES))
    return path


def scene(tmp_path, seed=5):
    rng = np.random.default_rng(seed)
    labels = np.where(ndimage.gaussian_filter(rng.normal(size=(40, 50)), 3) > 0, 4, 1)
    labels = labels.astype(np.uint8)
    probs = rng.integers(0, 255, (2, 40, 50)).astype(np.uint8)
    probs[rng.random((2, 40, 50)) < 0.05] = 255                     # nodata pixels
    return (write(tmp_path / "cls.tif", labels, 255), write(tmp_path / "p.tif", probs, 255),
            labels, probs)


def features(path):
    ds = ogr.Open(str(path))
    return [f.items() for f in ds.GetLayer(0)]


def reference_stats(labels, probs):
    """(class, pixel count, mean, min) of every 4-connected region, from whole arrays."""
    out = []
    for band, value in enumerate([1, 4]):
        regions, n = ndimage.label(labels == value)
        for i in range(1, n + 1):
            p = probs[band][(regions == i) & (probs[band] != 255)].astype(float)
            out.append((value, int((regions == i).sum()), round(p.mean() / 254, 9),
                        round(p.min() / 254, 9)))
    return sorted(out)


@pytest.mark.parametrize("block", [7, 64])
def test_probability_mean_and_min_per_polygon_match_the_whole_raster(tmp_path, block):
    cls, prob, labels, probs = scene(tmp_path)
    out = tmp_path / f"v{block}.gpkg"
    vectorize(cls, out, probabilities=prob, block=block)
    got = sorted((f["class_value"], int(round(f["area_m2"] / 0.25)), round(f["prob_mean"], 9),
                  round(f["prob_min"], 9)) for f in features(out))
    assert got == reference_stats(labels, probs)


def test_provenance_on_every_polygon(tmp_path):
    cls, _, _, _ = scene(tmp_path)
    model = make_model(tmp_path / "m.rsmodel", bands=3, classes=2)
    out = tmp_path / "v.gpkg"
    vectorize(cls, out, model=model)
    rows = features(out)
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    assert rows and all(r["model_sha256"] == sha and r["source"] == "cls.tif" for r in rows)
    assert {r["rs_seg_version"] for r in rows} == {__version__}
    created = dt.datetime.fromisoformat(rows[0]["created"])
    assert abs((dt.datetime.now(dt.timezone.utc) - created).total_seconds()) < 600
    assert rows[0]["model"] and rows[0]["prob_mean"] is None and rows[0]["perimeter_m"] > 0


def test_probabilities_on_another_grid_are_refused(tmp_path):
    cls, _, _, probs = scene(tmp_path)
    other = write(tmp_path / "small.tif", probs[:, :20, :20], 255)
    with pytest.raises(InputError, match="not on the class raster's grid"):
        vectorize(cls, tmp_path / "x.gpkg", probabilities=other)
    assert not (tmp_path / "x.gpkg").exists()
