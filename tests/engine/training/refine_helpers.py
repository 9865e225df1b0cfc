"""A tiny scene, model and corrections file for the refine tests."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Tuple

import numpy as np
from osgeo import ogr

from engine.io.corrections import CLASS_FIELD, CORRECTIONS_LAYER, REVIEWED_LAYER, create_corrections
from tests.conftest import make_model, write_raster

ORIGIN, RES = (500000.0, 5000000.0), 0.5


def scene(tmp_path: Path, size: int = 96) -> Tuple[Path, Path]:
    """A 3-band image whose left half is bright and right half dark, and a random 3-class unet."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 60, (3, size, size)).astype(np.uint8)
    data[:, :, : size // 2] += 150
    image = write_raster(tmp_path / "image.tif", data, origin=ORIGIN, res=RES)
    model = make_model(tmp_path / "parent.rsmodel", bands=3, classes=3, base=4, depth=2,
                       tile=32, overlap=8)
    return image, model


def box(col0: int, row0: int, col1: int, row1: int) -> str:
    """WKT of a pixel box on the scene's grid."""
    x0, x1 = ORIGIN[0] + col0 * RES, ORIGIN[0] + col1 * RES
    y0, y1 = ORIGIN[1] - row1 * RES, ORIGIN[1] - row0 * RES
    return f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"


def corrections(path: Path, boxes: Iterable[Tuple[str, Optional[int]]],
                reviewed: Iterable[str] = ()) -> Path:
    """A corrections GeoPackage holding ``(wkt, class)`` polygons and reviewed places."""
    create_corrections(path, "EPSG:32633")
    ds = ogr.Open(str(path), 1)
    for name, items in ((CORRECTIONS_LAYER, boxes), (REVIEWED_LAYER, ((w, None) for w in reviewed))):
        lyr = ds.GetLayerByName(name)
        for wkt, value in items:
            feat = ogr.Feature(lyr.GetLayerDefn())
            feat.SetGeometry(ogr.ForceToMultiPolygon(ogr.CreateGeometryFromWkt(wkt)))
            if value is not None:
                feat.SetField(CLASS_FIELD, value)
            lyr.CreateFeature(feat)
    ds = None
    return path
