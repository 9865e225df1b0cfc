"""Click-to-segment: a map tool that turns the class region under a click into a polygon.

A click runs ``engine.click.point.segment_at`` (mode "class region (model)": the region of the class a
trained model predicts; what ``rs_seg:segment_point`` calls too) or ``engine.click.sam_click.
sam_segment_at`` (mode "objects (SAM)": the object under the click, zero-shot, from a local SAM
checkpoint) in a background task on a window around the point; the region is previewed as a
filled translucent polygon with a strong outline.  Clicking inside the preview again, or
pressing Enter, adds it to the editable memory layer "Segments"; Esc (or a right click)
discards it.  The tool keeps one prediction cache (model mode) and one SAM session (image
embeddings per window), so clicks near an earlier one reuse its window's prediction or
embedding.  In SAM mode, once a window is encoded (the first click), the object under the
cursor is shown while the mouse moves (dashed outline; decoded through onnxruntime in a
background thread, latest position first, :mod:`.latest`) and a click fixes it.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from qgis.core import (Qgis, QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsFeature,
                       QgsGeometry, QgsPointXY, QgsProject, QgsRasterLayer, QgsVectorLayer,
                       QgsWkbTypes)
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent, QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor, QKeyEvent

from .. import layers, sources
from ..tasks import FunctionTask, start_function
from .latest import LatestOnly
from .messages import InputProblem, guarded, notify
from .model_manager import require_task

SEGMENTS_NAME = "Segments"
SEGMENTS_PROPERTY = "rs_seg/segments"
SEGMENTS_FIELDS = ("field=class:string(80)&field=class_value:integer&field=area_m2:double"
                   "&field=confidence:double")


MODE_MODEL, MODE_SAM = "model", "sam"
MODES = ((MODE_MODEL, "class region (model)"), (MODE_SAM, "objects (SAM)"))
SAM_CLASSES = [{"value": 0, "name": "object (SAM)", "color": [255, 170, 0]}]
PREVIEW_FILL_ALPHA, HOVER_FILL_ALPHA = 110, 60
HOVER_INTERVAL_S = 0.04  # at most 25 hover decodes a second: the canvas keeps its share
HOVER_COARSER = 4  # the hover outline at 1/4 resolution: 16× fewer pixels to label and trace


@dataclass
class ClickSource:
    """What a click segments: the layer, the model file, the device and the window (px); in
    SAM mode the SAM checkpoint instead of the model."""

    layer: Optional[QgsRasterLayer]
    model: str
    device: str = "auto"
    window: int = 512
    mode: str = MODE_MODEL
    sam_weights: str = ""


@dataclass
class Preview:
    """A segmented region waiting for confirmation."""

    result: Dict[str, Any]
    crs: QgsCoordinateReferenceSystem  # the raster's CRS, the geometry's
    geometry: QgsGeometry
    canvas_geometry: QgsGeometry
    classes: List[Dict[str, Any]]


def segments_layer(project: Optional[QgsProject] = None,
                   crs: Optional[QgsCoordinateReferenceSystem] = None,
                   create: bool = True) -> Optional[QgsVectorLayer]:
    """The project's "Segments" memory layer (made once, on first use, in ``crs``)."""
    project = project or QgsProject.instance()
    for layer in project.mapLayers().values():
        if isinstance(layer, QgsVectorLayer) and layer.customProperty(SEGMENTS_PROPERTY):
            return layer
    if not create:
        return None
    authid = (crs or project.crs()).authid() or "EPSG:4326"
    layer = QgsVectorLayer(f"Polygon?crs={authid}&{SEGMENTS_FIELDS}", SEGMENTS_NAME, "memory")
    if crs is not None and crs.isValid() and not crs.authid():
        layer.setCrs(crs)  # a CRS without an authority id: set it whole
    layer.setCustomProperty(SEGMENTS_PROPERTY, True)
    project.addMapLayer(layer, False)
    project.layerTreeRoot().insertLayer(0, layer)  # on top: seen above the rasters
    return layer


def _merged_classes(layer: QgsVectorLayer, classes: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The classes already styled on ``layer`` plus ``classes`` (earlier models keep theirs)."""
    renderer = layer.renderer()
    known: Dict[str, Dict[str, Any]] = {}
    if renderer is not None and renderer.type() == "categorizedSymbol":
        for cat in renderer.categories():
            c = cat.symbol().color()
            known[str(cat.value())] = {"value": 0, "name": str(cat.value()),
                                       "color": [c.red(), c.green(), c.blue()]}
    for c in classes:
        known.setdefault(str(c["name"]), c)
    return list(known.values())


def add_segment(layer: QgsVectorLayer, geometry: QgsGeometry, result: Dict[str, Any],
                classes: List[Dict[str, Any]]) -> QgsFeature:
    """Append a region to the Segments layer and style it by class."""
    feature = QgsFeature(layer.fields())
    feature.setGeometry(geometry)
    feature.setAttributes([result["class_name"], int(result["class_value"]),
                           float(result["area_m2"]), float(result["confidence"])])
    if layer.isEditable():  # the user is editing it: go through the edit buffer
        layer.addFeature(feature)
    else:
        layer.dataProvider().addFeatures([feature])
        layer.updateExtents()
    layers.style_class_polygons(layer, _merged_classes(layer, classes), field="class")
    layer.triggerRepaint()
    return feature


def style_rubber(rubber: QgsRubberBand, colour: List[int], fill_alpha: int, width: int,
                 line: Qt.PenStyle = Qt.PenStyle.SolidLine) -> None:
    """A filled translucent polygon with a strong outline: the class colour at ``fill_alpha``
    inside, a darker shade of it, opaque, ``width`` px wide around (reads on light and dark
    imagery alike)."""
    fill = QColor(*[int(v) for v in colour[:3]])
    outline = fill.darker(160)
    fill.setAlpha(fill_alpha)
    rubber.setFillColor(fill)
    rubber.setStrokeColor(outline)
    rubber.setWidth(width)
    rubber.setLineStyle(line)


class SegmentMapTool(QgsMapTool):
    """The click-to-segment tool; ``source()`` returns the current :class:`ClickSource`."""

    previewed = pyqtSignal(object)  # Preview, when a click's region is shown
    added = pyqtSignal(object)  # QgsFeature, when a region was added to "Segments"

    def __init__(self, canvas: QgsMapCanvas, iface: Any,
                 source: Callable[[], ClickSource]) -> None:
        super().__init__(canvas)
        self.iface = iface
        self.source = source
        self.cache: Any = None  # engine.click.point.PredictionCache, made on the first click
        self.sam_session: Any = None  # engine.click.sam_click.SamSession, made on the first SAM click
        self.preview: Optional[Preview] = None
        self.task: Optional[FunctionTask] = None
        self.rubber = QgsRubberBand(canvas, QgsWkbTypes.PolygonGeometry)
        style_rubber(self.rubber, SAM_CLASSES[0]["color"], PREVIEW_FILL_ALPHA, 3)
        self.hover_rubber = QgsRubberBand(canvas, QgsWkbTypes.PolygonGeometry)
        style_rubber(self.hover_rubber, SAM_CLASSES[0]["color"], HOVER_FILL_ALPHA, 2,
                     Qt.PenStyle.DashLine)
        self.hover = LatestOnly(self._hover_call, HOVER_INTERVAL_S)
        self.hover.done.connect(self._hovered)
        self.setCursor(Qt.CursorShape.CrossCursor)

    # ---- Qt / QGIS events ----------------------------------------------------------------------

    def canvasReleaseEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802 (QGIS API)
        if event.button() == Qt.MouseButton.RightButton:
            self.discard()
        elif event.button() == Qt.MouseButton.LeftButton:
            self.click(self.toMapCoordinates(event.pos()))

    def canvasMoveEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802 (QGIS API)
        self.hover_at(self.toMapCoordinates(event.pos()))

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (QGIS API)
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.preview is not None:
            self.confirm()
            event.accept()
        elif event.key() == Qt.Key.Key_Escape and self.preview is not None:
            self.discard()
            event.accept()
        else:
            event.ignore()

    def deactivate(self) -> None:
        self.discard()
        self.hover.clear()
        self.hover_rubber.reset(QgsWkbTypes.PolygonGeometry)
        super().deactivate()

    # ---- hover preview (SAM) ---------------------------------------------------------------------

    def hover_at(self, point: QgsPointXY) -> bool:
        """Queue the SAM mask under ``point`` (canvas CRS) when its window is already encoded;
        False (and no hover mask) otherwise."""
        src = self.source()
        session = self.sam_session
        layer = src.layer
        if src.mode != MODE_SAM or not src.sam_weights or layer is None or session is None \
                or not len(session.embeddings):
            return self._no_hover()
        p = QgsCoordinateTransform(self.canvas().mapSettings().destinationCrs(), layer.crs(),
                                   QgsProject.instance()).transform(point)
        path = sources.gdal_file(layer) if layer.extent().contains(p) else None
        if path is None:
            return self._no_hover()
        self.hover.submit((path, p.x(), p.y(), src.sam_weights, int(src.window), src.device,
                           layer.crs()))
        return True

    def _no_hover(self) -> bool:
        self.hover.clear()
        self.hover_rubber.reset(QgsWkbTypes.PolygonGeometry)
        return False

    def _hover_call(self, request: tuple) -> Optional[Dict[str, Any]]:
        """Background thread: the mask under the cursor, only from an encoded window."""
        from engine.click.sam_click import sam_segment_at
        path, x, y, weights, window, device, _ = request
        return sam_segment_at(path, x, y, weights, window=window, device=device,
                              session=self.sam_session, cached_only=True, preview=HOVER_COARSER)

    def _hovered(self, request: tuple, result: Optional[Dict[str, Any]]) -> None:
        """Main thread: show the hover mask (or none)."""
        if result is None:
            self.hover_rubber.reset(QgsWkbTypes.PolygonGeometry)
            return
        geometry = QgsGeometry()
        geometry.fromWkb(result["geometry"].wkb)
        geometry.transform(QgsCoordinateTransform(
            request[-1], self.canvas().mapSettings().destinationCrs(), QgsProject.instance()))
        self.hover_rubber.setToGeometry(geometry, None)
        self.hover_rubber.show()

    # ---- actions ---------------------------------------------------------------------------------

    @guarded(lambda self: self.iface)
    def click(self, point: QgsPointXY) -> None:
        """A left click at ``point`` (canvas CRS): confirm the preview it falls in, or segment."""
        if self.preview is not None and \
                self.preview.canvas_geometry.contains(QgsGeometry.fromPointXY(point)):
            self.confirm()
            return
        if self.task is not None:
            notify(self.iface, "Still segmenting the previous click; wait a moment.", Qgis.Info, 3)
            return
        self.segment(point)

    def segment(self, point: QgsPointXY) -> FunctionTask:
        """Start segmenting around ``point`` (canvas CRS) in a background task."""
        src = self.source()
        if src.layer is None:
            raise InputProblem("Choose the raster layer to click on (Segment ▸ Raster layer).")
        if src.mode == MODE_SAM and not src.sam_weights:
            raise InputProblem("Choose a SAM checkpoint (Click to segment ▸ SAM weights, e.g. "
                               "sam_vit_b_01ec64.pth) before clicking.")
        if src.mode != MODE_SAM and not src.model:
            raise InputProblem("Choose a segmentation model (Segment ▸ Model) before clicking.")
        layer = src.layer
        to_layer = QgsCoordinateTransform(self.canvas().mapSettings().destinationCrs(),
                                          layer.crs(), QgsProject.instance())
        p = to_layer.transform(point)
        if not layer.extent().contains(p):
            raise InputProblem(f"The click is outside layer '{layer.name()}'; click on the "
                               f"raster.")
        path = sources.gdal_file(layer)
        if path is None:
            raise InputProblem(f"Click-to-segment reads the layer's file, and '{layer.name()}' "
                               f"is not a file GDAL can open (web or in-memory layer). Save it "
                               f"as a GeoTIFF first, or use Processing ▸ RS Seg ▸ Segment at "
                               f"point.")
        if src.mode == MODE_SAM:
            from engine.click.sam_click import SamSession, sam_segment_at
            if self.sam_session is None:
                self.sam_session = SamSession()
            call = functools.partial(sam_segment_at, path, p.x(), p.y(), src.sam_weights,
                                     window=int(src.window), device=src.device,
                                     session=self.sam_session)
            classes = SAM_CLASSES
        else:
            classes = require_task(src.model, "segmentation")["classes"]
            from engine.click.point import PredictionCache, segment_at
            if self.cache is None:
                self.cache = PredictionCache()
            call = functools.partial(segment_at, src.model, path, p.x(), p.y(),
                                     window=int(src.window), device=src.device, cache=self.cache)
        self.task = start_function(f"RS Seg: segment at point in {layer.name()}", call,
                                   functools.partial(self._segmented, layer.crs(), classes))
        return self.task

    def _segmented(self, crs: QgsCoordinateReferenceSystem, classes: List[Dict[str, Any]],
                   task: FunctionTask) -> None:
        """Main thread: show the region of a finished click."""
        self.task = None
        if task.error:
            notify(self.iface, f"Click-to-segment: {task.error}", Qgis.Warning)
            return
        result = task.result
        geometry = QgsGeometry()
        geometry.fromWkb(result["geometry"].wkb)
        to_canvas = QgsCoordinateTransform(crs, self.canvas().mapSettings().destinationCrs(),
                                           QgsProject.instance())
        canvas_geometry = QgsGeometry(geometry)
        canvas_geometry.transform(to_canvas)
        self.preview = Preview(result, crs, geometry, canvas_geometry, classes)
        colour = next((c["color"] for c in classes if c["name"] == result["class_name"]),
                      SAM_CLASSES[0]["color"])
        style_rubber(self.rubber, colour, PREVIEW_FILL_ALPHA, 3)
        self.rubber.setToGeometry(canvas_geometry, None)
        self.rubber.show()
        note = " (region cut by the window edge; raise the click window)" \
            if result.get("truncated") else ""
        notify(self.iface, f"{result['class_name']}: {result['area_m2']:.1f} m², confidence "
                           f"{result['confidence']:.2f}{note}. Click it again or press Enter to "
                           f"add it to '{SEGMENTS_NAME}'; Esc discards.", Qgis.Info, 5)
        self.previewed.emit(self.preview)

    def confirm(self) -> Optional[QgsFeature]:
        """Add the previewed region to the Segments layer."""
        preview = self.preview
        if preview is None:
            return None
        layer = segments_layer(crs=preview.crs)
        geometry = QgsGeometry(preview.geometry)
        if layer.crs() != preview.crs:
            geometry.transform(QgsCoordinateTransform(preview.crs, layer.crs(),
                                                      QgsProject.instance()))
        feature = add_segment(layer, geometry, preview.result, preview.classes)
        self.discard()
        self.added.emit(feature)
        return feature

    def discard(self) -> None:
        """Forget the preview."""
        self.preview = None
        self.rubber.reset(QgsWkbTypes.PolygonGeometry)

    def close(self) -> None:
        """Take the preview off the canvas for good (plugin unload)."""
        self.discard()
        self.hover.stop()
        if self.task is not None:
            self.task.cancel()
        self.canvas().scene().removeItem(self.rubber)
        self.canvas().scene().removeItem(self.hover_rubber)
