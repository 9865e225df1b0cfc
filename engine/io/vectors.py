"""Vector input: polygon label layers (GeoPackage, Shapefile, GeoJSON …) read with OGR.

:func:`read_polygon_labels` scans a layer's class field once and fixes the mapping from field
values to class values; :func:`rasterize_polygons` burns the polygons onto any grid or window of
a grid (reprojecting them when the layer is in another CRS), reading only the features that
intersect the window; :func:`vector_bounds` gives the layer extent for overlap checks.

GDAL's Python bindings are used in their default (non-exception) mode and return values are
checked, so this module neither depends on nor changes the process-wide ``UseExceptions`` state.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
from affine import Affine
from osgeo import gdal, ogr
from rasterio.crs import CRS
from rasterio.features import rasterize
from rasterio.warp import transform_bounds, transform_geom

from ..jobs import InputError
from .classes import make_classes

#: Largest class value a label raster may hold (255 is the class-raster nodata value).
MAX_CLASS_VALUE = 254

_INT_TYPES = (ogr.OFTInteger, ogr.OFTInteger64)


@dataclass
class PolygonLabels:
    """How a layer's class field maps to class values.

    ``classes`` are card class entries ``{value, name, color}`` sorted by value; ``value_of`` maps
    a field value exactly as read from the file (``int`` for integer fields, ``str`` for text
    fields) to the class value burnt into label rasters.  ``kind`` is ``"integer"`` or
    ``"string"``; ``features`` counts features with a class value, ``skipped_null`` those whose
    class field is NULL/empty (they are never burnt); ``warnings`` are human-readable notes.
    """

    classes: List[Dict[str, Any]]
    value_of: Dict[Any, int]
    kind: str = "integer"
    features: int = 0
    skipped_null: int = 0
    warnings: List[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# opening


@contextlib.contextmanager
def _quiet_gdal() -> Iterator[None]:
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        yield
    finally:
        gdal.PopErrorHandler()


def _open_layer(path: str | Path, layer: Optional[str]) -> Tuple[Any, Any]:
    """Open ``path`` read-only and return ``(dataset, layer)``; the caller keeps ``dataset``
    alive while it uses the layer."""
    p = Path(path)
    if not str(path).startswith("/vsi") and not p.exists():
        raise InputError(f"vector file {p} does not exist; check the path")
    with _quiet_gdal():
        gdal.ErrorReset()
        try:
            ds = gdal.OpenEx(str(path), gdal.OF_VECTOR | gdal.OF_READONLY)
        except RuntimeError as exc:  # someone enabled GDAL exceptions process-wide
            ds, msg = None, str(exc)
        else:
            msg = gdal.GetLastErrorMsg()
    if ds is None or ds.GetLayerCount() == 0:
        detail = f" ({msg})" if msg else ""
        raise InputError(f"{p} is not a vector file OGR can read{detail}; give a GeoPackage, "
                         f"Shapefile or GeoJSON with polygons")
    names = [ds.GetLayerByIndex(i).GetName() for i in range(ds.GetLayerCount())]
    if layer is None:
        if len(names) > 1:
            raise InputError(f"{p} has {len(names)} layers ({', '.join(names)}); choose one "
                             f"with the layer option")
        lyr = ds.GetLayerByIndex(0)
    else:
        lyr = ds.GetLayerByName(str(layer)) if str(layer) in names else None
        if lyr is None:
            raise InputError(f"{p} has no layer {layer!r}; layers: {', '.join(names)}")
    return ds, lyr


def _layer_crs(lyr: Any) -> Optional[CRS]:
    srs = lyr.GetSpatialRef()
    if srs is None:
        return None
    wkt = srs.ExportToWkt()
    return CRS.from_wkt(wkt) if wkt else None


def _field_index(lyr: Any, path: str | Path, class_field: str) -> int:
    defn = lyr.GetLayerDefn()
    fields = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    if class_field not in fields:
        # OGR's own lookup is case-insensitive; require the exact name but suggest a near miss
        near = [f for f in fields if f.lower() == str(class_field).lower()]
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise InputError(f"layer {lyr.GetName()!r} of {Path(path)} has no field "
                         f"{class_field!r}{hint}; available fields: "
                         f"{', '.join(fields) if fields else '(none)'}")
    return fields.index(class_field)


def _field_kind(lyr: Any, idx: int, path: str | Path, class_field: str) -> str:
    fdefn = lyr.GetLayerDefn().GetFieldDefn(idx)
    ftype = fdefn.GetType()
    if ftype in _INT_TYPES:
        return "integer"
    if ftype == ogr.OFTReal:
        return "real"
    if ftype == ogr.OFTString:
        return "string"
    raise InputError(f"field {class_field!r} of {Path(path)} has type {fdefn.GetTypeName()}; "
                     f"the class field must hold integer class values or text class names")


def _read_value(feat: Any, idx: int, kind: str) -> Any:
    """The class field of ``feat`` as a dict key, or None when NULL/unset/empty."""
    if not feat.IsFieldSetAndNotNull(idx):
        return None
    if kind == "integer":
        return int(feat.GetFieldAsInteger64(idx))
    if kind == "real":
        return float(feat.GetFieldAsDouble(idx))
    text = feat.GetFieldAsString(idx)
    return text if text.strip() else None


# --------------------------------------------------------------------------------------------
# public API


def read_polygon_labels(path: str | Path, class_field: str,
                        layer: Optional[str] = None) -> PolygonLabels:
    """Scan ``class_field`` of a vector layer and fix the class values of its polygons.

    Integer fields hold the class values themselves (0..254).  Text fields hold class names;
    they get values 1..n in sorted order of the names, so the same file always gives the same
    values.  Real fields are accepted when every value is a whole number.  Features whose class
    field is NULL (or an empty string) are skipped and counted in ``skipped_null``.
    """

    ds, lyr = _open_layer(path, layer)
    idx = _field_index(lyr, path, class_field)
    kind = _field_kind(lyr, idx, path, class_field)
    defn = lyr.GetLayerDefn()
    others = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount()) if i != idx]
    lyr.SetIgnoredFields(others + ["OGR_GEOMETRY", "OGR_STYLE"])
    seen: Dict[Any, int] = {}
    total = nulls = 0
    layer_name = lyr.GetName()
    lyr.ResetReading()
    try:
        for feat in lyr:
            total += 1
            value = _read_value(feat, idx, kind)
            if value is None:
                nulls += 1
                continue
            seen[value] = seen.get(value, 0) + 1
    finally:
        lyr.SetIgnoredFields([])
        lyr = None
        ds = None
    name = Path(path).name
    if total == 0:
        raise InputError(f"{name} (layer {layer_name!r}) has no features; draw or load "
                         f"labelled polygons first")
    if not seen:
        raise InputError(f"all {total} features of {name} have an empty {class_field!r} field; "
                         f"fill in their class")
    warnings: List[str] = []
    if nulls:
        warnings.append(f"{nulls} of {total} features have no {class_field!r} value and are "
                        f"ignored")

    if kind == "string":
        names = sorted(seen)
        if len(names) > MAX_CLASS_VALUE:
            raise InputError(f"{class_field!r} holds {len(names)} different class names; at most "
                             f"{MAX_CLASS_VALUE} classes are supported")
        classes = make_classes(names)
        value_of = {n: c["value"] for n, c in zip(names, classes)}
    else:
        if kind == "real":
            fractional = sorted(v for v in seen if not float(v).is_integer())
            if fractional:
                raise InputError(f"{class_field!r} holds non-integer values "
                                 f"({', '.join(map(str, fractional[:5]))}); class values must "
                                 f"be whole numbers 0..{MAX_CLASS_VALUE}")
        values = sorted({int(v) for v in seen})
        bad = [v for v in values if not 0 <= v <= MAX_CLASS_VALUE]
        if bad:
            raise InputError(f"{class_field!r} holds class values outside 0..{MAX_CLASS_VALUE} "
                             f"({', '.join(map(str, bad[:5]))}); recode them, or store class "
                             f"names as text instead")
        classes = make_classes([str(v) for v in values], values)
        value_of = {v: int(v) for v in seen}
        if kind == "real":
            value_of = {float(v): int(v) for v in seen}
    return PolygonLabels(classes=classes, value_of=value_of, kind=kind,
                         features=total - nulls, skipped_null=nulls, warnings=warnings)


def _window_bounds(transform: Affine, width: int, height: int,
                   margin: float = 0.0) -> Tuple[float, float, float, float]:
    """(left, bottom, right, top) of the grid, enlarged by ``margin`` pixels on every side."""
    corners = [transform * (c, r) for c in (-margin, width + margin)
               for r in (-margin, height + margin)]
    xs, ys = zip(*corners)
    return min(xs), min(ys), max(xs), max(ys)


def _as_crs(crs: Any) -> Optional[CRS]:
    if crs is None or isinstance(crs, CRS):
        return crs
    return CRS.from_user_input(crs)


def _same_crs(a: Optional[CRS], b: Optional[CRS]) -> bool:
    return a is None or b is None or a == b


def rasterize_polygons(path: str | Path, class_field: str, labels: PolygonLabels, dst_crs: Any,
                       dst_transform: Affine, width: int, height: int,
                       layer: Optional[str] = None, fill: int = 0,
                       all_touched: bool = False) -> np.ndarray:
    """Burn the layer's polygons with their class values onto a ``height``×``width`` grid.

    ``dst_transform`` is the transform of the grid's top-left pixel, so a window of a large
    raster is rasterised by passing ``rasterio.windows.transform(window, ds.transform)``.  Only
    features intersecting the window (an OGR spatial filter in the layer's own CRS) are read.
    Polygons in another CRS are reprojected to ``dst_crs``; a layer without a CRS is taken to be
    in ``dst_crs``.  Pixels whose centre lies in a polygon get its class value (every touched
    pixel with ``all_touched``), others ``fill``.  Where polygons overlap, the feature read
    later (higher feature order) wins.  Features whose class value is NULL or unknown to
    ``labels`` are ignored.  Returns a uint8 array.
    """
    if not 0 <= int(fill) <= 255:
        raise InputError(f"fill value {fill} does not fit a uint8 label raster (0..255)")
    width, height = int(width), int(height)
    out_shape = (height, width)
    if width <= 0 or height <= 0:
        return np.full((max(height, 0), max(width, 0)), fill, dtype=np.uint8)
    dst = _as_crs(dst_crs)
    ds, lyr = _open_layer(path, layer)
    try:
        idx = _field_index(lyr, path, class_field)
        kind = _field_kind(lyr, idx, path, class_field)
        src = _layer_crs(lyr)
        reproject = not _same_crs(src, dst)
        # spatial filter: the window plus one pixel, expressed in the layer's CRS
        bounds = _window_bounds(dst_transform, width, height, margin=1.0)
        if reproject:
            try:
                bounds = transform_bounds(dst, src, *bounds, densify_pts=21)
            except Exception:  # outside the projection's domain: read everything
                bounds = None
        if bounds is not None and all(np.isfinite(bounds)):
            lyr.SetSpatialFilterRect(*bounds)
        geoms: List[Dict[str, Any]] = []
        values: List[int] = []
        lyr.ResetReading()
        for feat in lyr:
            key = _read_value(feat, idx, kind)
            value = labels.value_of.get(key) if key is not None else None
            if value is None:
                continue
            geom = feat.GetGeometryRef()
            if geom is None or geom.IsEmpty():
                continue
            if geom.HasCurveGeometry():
                geom = geom.GetLinearGeometry()
            geoms.append(json.loads(geom.ExportToJson()))
            values.append(int(value))
        lyr.SetSpatialFilter(None)
    finally:
        lyr = None
        ds = None
    if not geoms:
        return np.full(out_shape, fill, dtype=np.uint8)
    if reproject:
        geoms = transform_geom(src, dst, geoms)
    return rasterize(zip(geoms, values), out_shape=out_shape, transform=dst_transform,
                     fill=int(fill), dtype="uint8", all_touched=all_touched)


def vector_bounds(path: str | Path, layer: Optional[str] = None,
                  crs: Any = None) -> Tuple[float, float, float, float]:
    """The layer extent ``(left, bottom, right, top)``, in ``crs`` when given (else the layer's
    own CRS).  Raises :class:`InputError` for an empty layer."""
    ds, lyr = _open_layer(path, layer)
    try:
        if lyr.GetFeatureCount() == 0:
            raise InputError(f"{Path(path).name} (layer {lyr.GetName()!r}) has no features")
        with _quiet_gdal():
            try:
                minx, maxx, miny, maxy = lyr.GetExtent(force=1)
            except RuntimeError as exc:
                raise InputError(f"cannot compute the extent of {Path(path).name}: {exc}") from None
        src = _layer_crs(lyr)
    finally:
        lyr = None
        ds = None
    dst = _as_crs(crs)
    if _same_crs(src, dst):
        return minx, miny, maxx, maxy
    return tuple(transform_bounds(src, dst, minx, miny, maxx, maxy, densify_pts=21))


def layer_names(path: str | Path) -> List[str]:
    """Names of the layers in a vector file (for pickers and error messages)."""
    p = Path(path)
    if not str(path).startswith("/vsi") and not p.exists():
        raise InputError(f"vector file {p} does not exist; check the path")
    with _quiet_gdal():
        try:
            ds = gdal.OpenEx(str(path), gdal.OF_VECTOR | gdal.OF_READONLY)
        except RuntimeError:
            ds = None
    if ds is None:
        raise InputError(f"{p} is not a vector file OGR can read")
    return [ds.GetLayerByIndex(i).GetName() for i in range(ds.GetLayerCount())]


__all__ = ["PolygonLabels", "read_polygon_labels", "rasterize_polygons", "vector_bounds",
           "layer_names", "MAX_CLASS_VALUE"]
