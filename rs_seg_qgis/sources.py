"""From QGIS raster layers to files the engine can read.

The engine reads rasters with GDAL (rasterio), so a layer backed by a file GDAL opens is used as
it is: no copy, full resolution.  An EXTENT only clips it through a small VRT on the layer's own
pixel grid.  Anything else (WMS/XYZ, virtual rasters, in-memory or sub-dataset layers, open
options GDAL would not see) is first rendered through the layer's data provider into a temporary
GeoTIFF over the extent, at the model's ground sampling distance when its card has one, else at
the layer's own resolution.
"""
from __future__ import annotations

import math
import os
from typing import Optional

from qgis.core import (QgsFeedback, QgsProcessingContext, QgsProcessingException,
                       QgsProcessingFeedback, QgsProcessingUtils, QgsProviderRegistry,
                       QgsRasterBlockFeedback, QgsRasterDataProvider, QgsRasterFileWriter,
                       QgsRasterLayer, QgsRasterPipe, QgsRectangle, QgsUnitTypes)
from qgis.PyQt.QtCore import Qt

#: Refuse to render more pixels than this from a non-file layer (about 4 GB of RGBA).
MAX_EXPORT_PIXELS = 1_000_000_000


def gdal_file(layer: QgsRasterLayer) -> Optional[str]:
    """The file behind ``layer`` when GDAL can open it on its own, else None.

    ``/vsimem/`` is excluded: it lives in one process's memory and the engine may run elsewhere.
    """
    if layer.providerType() != "gdal":
        return None
    parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
    path = parts.get("path") or ""
    if parts.get("layerName") or parts.get("openOptions"):
        return None  # a sub-dataset or open options: only QGIS knows how to open it
    if path.startswith("/vsi"):
        return None if path.startswith("/vsimem/") else path
    return path if os.path.isfile(path) else None


def raster_path(layer: QgsRasterLayer, context: QgsProcessingContext,
                feedback: Optional[QgsProcessingFeedback] = None,
                extent: Optional[QgsRectangle] = None,
                gsd_m: Optional[float] = None) -> str:
    """A path the engine can read holding ``layer`` over ``extent`` (in the layer CRS).

    ``extent`` None or empty means the whole layer.  ``gsd_m`` is the resolution (metres) used
    when the layer must be rendered to a file.
    """
    area = _clip_extent(layer, extent)
    path = gdal_file(layer)
    if path is not None:
        return path if area is None else clip_to_vrt(layer, path, area)
    target = QgsProcessingUtils.generateTempFilename(f"{_safe_name(layer)}.tif")
    return export_raster(layer, target, area or layer.extent(), resolution(layer, gsd_m),
                         context, feedback)


def resolution(layer: QgsRasterLayer, gsd_m: Optional[float] = None) -> float:
    """Pixel size in layer units for rendering ``layer``: ``gsd_m`` if given, else its own."""
    if gsd_m:
        units = layer.crs().mapUnits()
        return float(gsd_m) * QgsUnitTypes.fromUnitToUnitFactor(QgsUnitTypes.DistanceMeters, units)
    provider = layer.dataProvider()
    if provider.capabilities() & QgsRasterDataProvider.Size:
        return float(layer.rasterUnitsPerPixelX())
    raise QgsProcessingException(
        f"layer '{layer.name()}' has no native resolution (a web or rendered layer) and the "
        f"model card has no ground sampling distance; save the layer as a GeoTIFF first "
        f"(Export ▸ Save As…) and use that")


def clip_to_vrt(layer: QgsRasterLayer, path: str, extent: QgsRectangle) -> str:
    """A VRT of ``path`` cut to the whole pixels covering ``extent`` (no resampling)."""
    from osgeo import gdal
    full = layer.extent()
    xres, yres = layer.rasterUnitsPerPixelX(), layer.rasterUnitsPerPixelY()
    col0 = max(0, math.floor((extent.xMinimum() - full.xMinimum()) / xres + 1e-6))
    col1 = min(layer.width(), math.ceil((extent.xMaximum() - full.xMinimum()) / xres - 1e-6))
    row0 = max(0, math.floor((full.yMaximum() - extent.yMaximum()) / yres + 1e-6))
    row1 = min(layer.height(), math.ceil((full.yMaximum() - extent.yMinimum()) / yres - 1e-6))
    target = QgsProcessingUtils.generateTempFilename(f"{_safe_name(layer)}.vrt")
    ds = gdal.Translate(target, path, format="VRT",
                        srcWin=[col0, row0, max(1, col1 - col0), max(1, row1 - row0)])
    if ds is None:
        raise QgsProcessingException(f"cannot clip {path} to the extent: "
                                     f"{gdal.GetLastErrorMsg()}")
    ds = None  # closing writes the VRT
    return target


def export_raster(layer: QgsRasterLayer, target: str, extent: QgsRectangle, pixel_size: float,
                  context: QgsProcessingContext,
                  feedback: Optional[QgsFeedback] = None) -> str:
    """Render ``layer``'s data over ``extent`` at ``pixel_size`` into the GeoTIFF ``target``."""
    cols = max(1, round(extent.width() / pixel_size))
    rows = max(1, round(extent.height() / pixel_size))
    if cols * rows > MAX_EXPORT_PIXELS:
        raise QgsProcessingException(
            f"layer '{layer.name()}' would need {cols}×{rows} pixels at {pixel_size:g} units per "
            f"pixel; choose a smaller extent")
    error = _write(layer, target, cols, rows, extent, context, feedback)
    if error is not None:
        _remove(target)
        raise QgsProcessingException(error)
    return target


def _write(layer: QgsRasterLayer, target: str, cols: int, rows: int, extent: QgsRectangle,
           context: QgsProcessingContext, feedback: Optional[QgsFeedback]) -> Optional[str]:
    """Write the GeoTIFF; returns an error message or None.

    The pipe and writer live only in this frame: PyQGIS leaks the frames of an exception raised
    inside an algorithm, and a provider freed after QGIS exits crashes it.
    """
    pipe = QgsRasterPipe()
    if not pipe.set(layer.dataProvider().clone()):
        return f"cannot read layer '{layer.name()}' through its provider"
    writer = QgsRasterFileWriter(target)
    writer.setOutputFormat("GTiff")
    writer.setCreateOptions(["COMPRESS=DEFLATE", "TILED=YES"])
    block_feedback = QgsRasterBlockFeedback()
    if feedback is not None:
        # direct: the writer runs on this (worker) thread, which has no event loop for queued calls
        feedback.canceled.connect(block_feedback.cancel, Qt.ConnectionType.DirectConnection)
        if feedback.isCanceled():
            block_feedback.cancel()
    error = writer.writeRaster(pipe, cols, rows, extent, layer.crs(), context.transformContext(),
                               block_feedback)
    if feedback is not None:
        feedback.canceled.disconnect(block_feedback.cancel)
    # the writer checks for cancel only between its tiles: a small raster is never cancelled
    if error == QgsRasterFileWriter.WriteCanceled or block_feedback.isCanceled():
        return f"cancelled by the user while exporting '{layer.name()}'; no output was written"
    if error != QgsRasterFileWriter.NoError:
        return (f"exporting layer '{layer.name()}' to {target} failed (QgsRasterFileWriter "
                f"error {int(error)})")
    return None


def _clip_extent(layer: QgsRasterLayer, extent: Optional[QgsRectangle]) -> Optional[QgsRectangle]:
    """``extent`` ∩ layer extent; None when no clipping is needed."""
    if extent is None or extent.isNull() or extent.isEmpty():
        return None
    full = layer.extent()
    if extent.contains(full):
        return None
    if not extent.intersects(full):
        raise QgsProcessingException(f"the extent does not overlap layer '{layer.name()}'")
    return extent.intersect(full)


def _safe_name(layer: QgsRasterLayer) -> str:
    return "".join(c if c.isalnum() else "_" for c in layer.name())[:40] or "layer"


def _remove(path: str) -> None:
    for candidate in (path, path + ".aux.xml"):
        if os.path.exists(candidate):
            os.remove(candidate)
