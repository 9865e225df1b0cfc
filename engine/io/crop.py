"""A window of a raster as a VRT (no pixels copied): what refine trains on and what a
re-predicted extent reads."""
from __future__ import annotations

from pathlib import Path

from osgeo import gdal
from rasterio.windows import Window

from ..jobs import InputError


def crop_vrt(image: str | Path, window: Window, path: Path) -> Path:
    """Write ``path``, a VRT of ``window`` of ``image`` on the image's grid."""
    src = str(Path(image).resolve())
    try:
        done = gdal.Translate(str(path), src, format="VRT",
                              srcWin=[int(window.col_off), int(window.row_off),
                                      int(window.width), int(window.height)])
    except (RuntimeError, ValueError):  # GDAL raises when it cannot open the source
        done = None
    if done is None:
        raise InputError(f"cannot read {image} with GDAL: {gdal.GetLastErrorMsg()}")
    done = None
    return path
