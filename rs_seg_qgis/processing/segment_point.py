"""``rs_seg:segment_point``: the polygon of the class region under one point."""
from __future__ import annotations

import functools
from typing import Any, Dict, Optional

from qgis.core import (Qgis, QgsFeature, QgsFeatureSink, QgsField, QgsFields, QgsGeometry,
                       QgsPointXY, QgsProcessing, QgsProcessingContext, QgsProcessingException,
                       QgsProcessingFeedback, QgsProcessingOutputNumber,
                       QgsProcessingOutputString, QgsProcessingParameterFeatureSink,
                       QgsProcessingParameterPoint, QgsProcessingParameterRasterLayer,
                       QgsRasterLayer, QgsRectangle, QgsWkbTypes)
from qgis.PyQt.QtCore import QVariant

from .. import sources
from ..layers import style_class_polygons, style_on_load
from .base import EngineRun, RsSegAlgorithm, help_html, require_engine


def field(name: str, kind: str) -> QgsField:
    """A field of type ``kind`` ('Int', 'String', 'Double'): QMetaType types from QGIS 3.38
    (the only ones Qt 6 builds know), QVariant types before (QGIS 3.22 needs those)."""
    if Qgis.QGIS_VERSION_INT >= 33800:
        from qgis.PyQt.QtCore import QMetaType
        return QgsField(name, getattr(QMetaType.Type, kind))
    return QgsField(name, getattr(QVariant, kind))


def region_fields() -> QgsFields:
    """Attributes of a segmented region."""
    fields = QgsFields()
    for name, kind in (("class_value", "Int"), ("class_name", "String"), ("area_m2", "Double"),
                       ("confidence", "Double")):
        fields.append(field(name, kind))
    return fields


class SegmentPointAlgorithm(RsSegAlgorithm):
    ID = "segment_point"
    DISPLAY = "Segment at point"
    GROUP = "Inference"
    GROUP_ID = "inference"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return help_html(
            "Segments a window around a point and returns the connected region of the class "
            "under the point (a building, a field, a tree crown) as a polygon with its class, "
            "area and confidence (mean class probability over the region). This is what the "
            "click-to-segment map tool runs.",
            [("INPUT", "the image"),
             ("MODEL", "a segmentation model file"),
             ("POINT", "the point, in any CRS (reprojected to the layer's)"),
             ("WINDOW", "edge of the square window segmented around the point, in pixels "
                        "(default 512; larger for big objects, smaller for speed)"),
             ("DEVICE", "auto, cpu or cuda"),
             ("OUTPUT", "the region polygon: class_value, class_name, area_m2, confidence")])

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Input raster"))
        self.add_model()
        self.addParameter(QgsProcessingParameterPoint("POINT", "Point"))
        self.add_int("WINDOW", "Window size in pixels", default=512, minimum=16)
        self.add_device()
        self.add_gsd()
        self.addParameter(QgsProcessingParameterFeatureSink(
            "OUTPUT", "Segmented region", QgsProcessing.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputString("CLASS_NAME", "Class name"))
        self.addOutput(QgsProcessingOutputNumber("CONFIDENCE", "Confidence"))
        self.addOutput(QgsProcessingOutputNumber("AREA_M2", "Area (m²)"))

    def processAlgorithm(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> Dict[str, Any]:  # noqa: N802
        require_engine(self.parameterAsFile(parameters, "MODEL", context))
        from engine.formats.modelfile import read_card
        from engine.click.point import segment_at

        run = EngineRun(context, feedback)
        model = self.parameterAsFile(parameters, "MODEL", context)
        card = run.call(read_card, model, job=False)
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        point = self.parameterAsPoint(parameters, "POINT", context, layer.crs())
        window = self.parameterAsInt(parameters, "WINDOW", context)
        image = sources.gdal_file(layer) or self._export_window(layer, point, window,
                                                                card.get("gsd_m"), context,
                                                                feedback)
        r = run.call(segment_at, model, image, point.x(), point.y(), window=window,
                     device=self.parameterAsEnumString(parameters, "DEVICE", context),
                     **self.gsd_options(parameters, context))
        if r["truncated"]:
            feedback.pushWarning(f"the region reaches the edge of the {window} px window; a "
                                 f"larger WINDOW would include more of it")
        sink, dest = self.parameterAsSink(parameters, "OUTPUT", context, region_fields(),
                                          QgsWkbTypes.Polygon, layer.crs())
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, "OUTPUT"))
        feature = QgsFeature(region_fields())
        geometry = QgsGeometry()
        geometry.fromWkb(r["geometry"].wkb)
        feature.setGeometry(geometry)
        feature.setAttributes([r["class_value"], r["class_name"], r["area_m2"],
                               r["confidence"]])
        sink.addFeature(feature, QgsFeatureSink.FastInsert)
        style_on_load(context, dest, functools.partial(style_class_polygons,
                                                       classes=card["classes"]))
        return {"OUTPUT": dest, "CLASS_NAME": r["class_name"], "CONFIDENCE": r["confidence"],
                "AREA_M2": r["area_m2"]}

    @staticmethod
    def _export_window(layer: QgsRasterLayer, point: QgsPointXY, window: int,
                       gsd_m: Optional[float], context: QgsProcessingContext,
                       feedback: QgsProcessingFeedback) -> str:
        """Save the window around ``point`` of a layer GDAL cannot read as a file."""
        half = window / 2 * sources.resolution(layer, gsd_m)
        extent = QgsRectangle(point.x() - half, point.y() - half, point.x() + half,
                              point.y() + half)
        return sources.raster_path(layer, context, feedback, extent, gsd_m)
