"""Regularised buildings and the polygons around them: the neighbours take the drawn buildings
as their borders, so the coverage has no gap and no overlap, whatever the block size."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from osgeo import ogr
from rasterio.features import rasterize
from rasterio.transform import from_origin
from scipy import ndimage
from shapely import affinity, wkb
from shapely.geometry import box
from shapely.ops import unary_union

from engine.analysis.vectorize import vectorize

PIXEL = 0.5
ORIGIN = (2600000.0, 1200000.0)


def suburb(tmp_path, size=120, seed=0):
    """Rotated houses on a ground / tree coverage (smooth random blobs)."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(2, size, size)), (0, 8, 8))
    a = np.where(field[0] > field[1], 1, 3).astype(np.uint8)
    houses = []
    for _ in range(8):
        cx, cy = rng.uniform(12, size - 12, 2)
        w, h = rng.uniform(8, 24, 2)
        houses.append(affinity.rotate(box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2),
                                      rng.uniform(0, 90)))
    a[rasterize([(h, 1) for h in houses], out_shape=a.shape) > 0] = 2
    classes = [{"value": v, "name": n, "color": [0, 0, 0]}
               for v, n in ((1, "ground"), (2, "building"), (3, "tree"))]
    path = tmp_path / f"suburb{seed}.tif"
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1,
                       dtype="uint8", crs="EPSG:2056", nodata=255,
                       transform=from_origin(*ORIGIN, PIXEL, PIXEL)) as dst:
        dst.write(a, 1)
        dst.update_tags(1, RS_SEG_CLASSES=json.dumps(classes))
    return path, size * PIXEL


def polygons(path):
    ds = ogr.Open(str(path))
    return [(f["class_name"], wkb.loads(bytes(f.GetGeometryRef().ExportToWkb())))
            for f in ds.GetLayer(0)]


@pytest.mark.parametrize("seed,block", [(0, 32), (0, 1024), (1, 48)])
def test_natural_polygons_take_the_regularised_buildings_as_borders(tmp_path, seed, block):
    path, extent = suburb(tmp_path, seed=seed)
    out = tmp_path / "o.gpkg"
    vectorize(path, out, regularize="building", smooth="tree", block=block)
    polys = polygons(out)
    buildings = [p for n, p in polys if n == "building"]
    others = [p for n, p in polys if n != "building"]
    assert buildings and {n for n, _ in polys} == {"ground", "building", "tree"}
    assert all(p.is_valid for _, p in polys)
    # still regularised: a few straight walls each, not the pixel staircase
    raw = polygons(vectorize(path, tmp_path / "raw.gpkg", as_is="all")["output"])
    assert sum(len(p.exterior.coords) for p in buildings) * 4 < \
        sum(len(p.exterior.coords) for n, p in raw if n == "building")
    built = unary_union(buildings)
    assert sum(p.intersection(built).area for p in others) < 1e-6  # m²: no overlap
    frame = box(ORIGIN[0], ORIGIN[1] - extent, ORIGIN[0] + extent, ORIGIN[1])
    assert frame.difference(unary_union([p for _, p in polys])).area < 1e-4  # m²: no gap
    # the trees and the ground meet the buildings along the buildings' drawn walls
    # (not the walls on the raster edge or against another building; 1 mm: float noise)
    walls = [b.boundary.difference(frame.exterior).difference(
        unary_union([c for c in buildings if c is not b]).buffer(0.001)) for b in buildings]
    borders = unary_union([p.boundary for p in others]).buffer(0.001)
    assert sum(w.length for w in walls) > 50
    assert sum(w.difference(borders).length for w in walls) < 0.001
