"""The analyst's corrections file: one GeoPackage with two polygon layers.

``corrections`` holds polygons drawn (or copied from a predicted polygon) with the class they
should have, in an integer ``class`` field holding the model's class values; ``reviewed`` holds
the places the analyst looked at.  A reviewed place with no correction in it counts as confirmed:
the model was right there.  :func:`create_corrections` makes an empty file for a raster's CRS;
:func:`read_layer` reads either layer's polygons, reprojected onto a raster's CRS.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from osgeo import ogr, osr
from rasterio.crs import CRS
from rasterio.warp import transform_geom

from ..jobs import InputError, OutputError, check_writable_output
from .vectors import _field_index, _field_kind, _layer_crs, _open_layer, _read_value, layer_names

CORRECTIONS_LAYER = "corrections"
REVIEWED_LAYER = "reviewed"
CLASS_FIELD = "class"


@dataclass
class Feature:
    """One polygon: its feature id, its class field value (None for reviewed places) and its
    GeoJSON geometry in the requested CRS."""

    fid: int
    value: Any
    geometry: Dict[str, Any]


def create_corrections(path: str | Path, crs: Any) -> Path:
    """Write an empty corrections GeoPackage (both layers) in ``crs``; refuses to overwrite."""
    out = Path(path)
    if out.exists():
        raise OutputError(f"{out} exists already; open it as the corrections layer or choose "
                          f"another name")
    srs = osr.SpatialReference()
    srs.ImportFromWkt(CRS.from_user_input(crs).to_wkt())
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    check_writable_output(out)
    # made under its own name in a hidden folder beside it (GDAL wants the .gpkg extension),
    # then moved in: never a half-made file at ``path``
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as folder:
        part = Path(folder) / out.name
        ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(part))
        if ds is None:
            raise OutputError(f"cannot create a GeoPackage at {out}; check the folder")
        for name in (CORRECTIONS_LAYER, REVIEWED_LAYER):
            lyr = ds.CreateLayer(name, srs, ogr.wkbMultiPolygon)
            if name == CORRECTIONS_LAYER:
                lyr.CreateField(ogr.FieldDefn(CLASS_FIELD, ogr.OFTInteger))
        ds = lyr = None
        os.replace(part, out)
    return out


def read_layer(path: str | Path, layer: Optional[str], dst_crs: Any,
               class_field: Optional[str] = None) -> List[Feature]:
    """The polygons of ``layer`` (the only layer when None) in ``dst_crs`` with their
    ``class_field`` values (None without a field); empty geometries are left out."""
    ds, lyr = _open_layer(path, layer)
    try:
        idx = kind = None
        if class_field is not None:
            idx = _field_index(lyr, path, class_field)
            kind = _field_kind(lyr, idx, path, class_field)
        src = _layer_crs(lyr)
        features = []
        lyr.ResetReading()
        for feat in lyr:
            geom = feat.GetGeometryRef()
            if geom is None or geom.IsEmpty():
                continue
            if geom.HasCurveGeometry():
                geom = geom.GetLinearGeometry()
            value = _read_value(feat, idx, kind) if idx is not None else None
            features.append(Feature(int(feat.GetFID()), value, json.loads(geom.ExportToJson())))
    finally:
        lyr = None
        ds = None
    dst = CRS.from_user_input(dst_crs) if dst_crs is not None else None
    if src is not None and dst is not None and src != dst and features:
        moved = transform_geom(src, dst, [f.geometry for f in features])
        features = [Feature(f.fid, f.value, g) for f, g in zip(features, moved)]
    return features


def has_layer(path: str | Path, layer: str) -> bool:
    """True when the vector file holds a layer of that name."""
    return layer in layer_names(path)


def corrections_layer(path: str | Path) -> Optional[str]:
    """The layer holding the corrections: ``corrections`` in a file made by
    :func:`create_corrections`, else the file's only layer (None)."""
    names = layer_names(path)
    if CORRECTIONS_LAYER in names:
        return CORRECTIONS_LAYER
    if len(names) > 1:
        raise InputError(f"{Path(path).name} has layers {', '.join(names)} but none is called "
                         f"{CORRECTIONS_LAYER!r}; name the corrections layer so")
    return None


def reviewed_places(corrections: Optional[str | Path], layer: Optional[str],
                    reviewed: Optional[str | Path], crs: Any) -> List[Feature]:
    """The reviewed places in ``crs``: from ``reviewed`` (its ``reviewed`` layer, else its only
    layer), else from the corrections file's own ``reviewed`` layer when its corrections are
    in a layer named ``layer``, else none."""
    if reviewed is not None:
        return read_layer(reviewed, REVIEWED_LAYER if has_layer(reviewed, REVIEWED_LAYER)
                          else None, crs)
    if layer is not None and has_layer(corrections, REVIEWED_LAYER):
        return read_layer(corrections, REVIEWED_LAYER, crs)
    return []
