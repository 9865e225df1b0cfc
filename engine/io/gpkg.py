"""Polygon features into one GeoPackage layer, committed in batches.

The schema is a list of ``(field name, kind)`` with kind ``int``, ``real`` or ``text``; a value
of ``None`` is written as NULL.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Mapping, Sequence, Tuple

from shapely.geometry import Polygon

from ..jobs import OutputError

COMMIT_EVERY = 20000
SIDECARS = ("-journal", "-wal", "-shm")


class GpkgWriter:
    """Features into one GeoPackage layer; ``finish`` commits, ``discard`` drops the sidecars
    of a file that is being thrown away."""

    def __init__(self, path: Path, layer: str, crs: Any,
                 fields: Sequence[Tuple[str, str]]) -> None:
        from osgeo import gdal, ogr, osr
        self._ogr = ogr
        self.path = path
        driver = ogr.GetDriverByName("GPKG")
        if driver is None:
            raise OutputError("GDAL was built without the GeoPackage driver")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # the driver refuses to create over an existing (empty) file
        gdal.PushErrorHandler("CPLQuietErrorHandler")  # "extension should be gpkg" warning
        try:
            self.ds = driver.CreateDataSource(str(path))
            msg = gdal.GetLastErrorMsg()
        finally:
            gdal.PopErrorHandler()
        if self.ds is None:
            raise OutputError(f"cannot create a GeoPackage at {path.parent} ({msg})")
        srs = None
        if crs is not None:
            srs = osr.SpatialReference()
            srs.ImportFromWkt(crs.to_wkt())
            srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        self.layer = self.ds.CreateLayer(layer, srs, ogr.wkbPolygon,
                                         options=["GEOMETRY_NAME=geom", "FID=fid"])
        if self.layer is None:
            raise OutputError(f"cannot create layer {layer!r} in the GeoPackage")
        kinds = {"int": ogr.OFTInteger, "real": ogr.OFTReal, "text": ogr.OFTString}
        for name, kind in fields:
            self.layer.CreateField(ogr.FieldDefn(name, kinds[kind]))
        self._defn = self.layer.GetLayerDefn()
        self._uncommitted = 0
        self.layer.StartTransaction()

    def add(self, geom: Polygon, values: Mapping[str, Any]) -> None:
        """Write one polygon with its field values."""
        ogr = self._ogr
        feat = ogr.Feature(self._defn)
        for name, value in values.items():
            if value is None:
                feat.SetFieldNull(name)
            else:
                feat.SetField(name, value)
        feat.SetGeometryDirectly(ogr.CreateGeometryFromWkb(geom.wkb))
        if self.layer.CreateFeature(feat) != 0:
            raise OutputError("writing a feature to the GeoPackage failed (disk full?)")
        self._uncommitted += 1
        if self._uncommitted >= COMMIT_EVERY:
            self.layer.CommitTransaction()
            self.layer.StartTransaction()
            self._uncommitted = 0

    def finish(self) -> None:
        """Commit and close."""
        if self.layer.CommitTransaction() != 0:
            raise OutputError("committing the GeoPackage failed (disk full?)")
        self.close()

    def close(self) -> None:
        """Close without committing what is pending."""
        self._defn = None
        self.layer = None
        if self.ds is not None:
            self.ds.FlushCache()
        self.ds = None  # dereferencing closes the file

    def discard(self) -> None:
        """Close and remove the SQLite sidecar files (the caller removes the file itself)."""
        self.close()
        for suffix in SIDECARS:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(str(self.path) + suffix)
