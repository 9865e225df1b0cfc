"""``rs_seg:review_places``: the places to check next (``engine places``).

The dock's review list as a layer, for the toolbox, batch runs, the model builder and
``qgis_process``: each round of the analyst's loop is Segment raster (with uncertainty) →
Places to check next → corrections drawn in them → Refine model on corrections.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from qgis.core import (QgsProcessing, QgsProcessingContext, QgsProcessingFeedback,
                       QgsProcessingOutputNumber, QgsProcessingParameterExtent,
                       QgsProcessingParameterFeatureSource, QgsProcessingParameterRasterLayer,
                       QgsProcessingParameterVectorDestination)

from .base import EngineRun, RsSegAlgorithm, help_html, require_engine

PLACES = 10  # engine.analysis.unsure.PLACES (the engine may be missing)
PLACE_PX = 64  # engine.analysis.unsure.PLACE_PX


class ReviewPlacesAlgorithm(RsSegAlgorithm):
    ID = "review_places"
    DISPLAY = "Places to check next"
    GROUP = "Training"
    GROUP_ID = "training"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return help_html(
            "Lists where to check the model next, as square polygons ranked most unsure first: "
            "the places are shared among the kinds of place the image holds (by appearance), "
            "so the areas where the model is sure but may be wrong get checked too, and the "
            "list mixes the predicted classes. Places already corrected or reviewed are not "
            "listed again. Draw corrections in them, mark them reviewed, then Refine model on "
            "corrections.",
            [("UNCERTAINTY", "the model's uncertainty raster (Segment raster, Uncertainty "
                             "output)"),
             ("INPUT", "the image it was predicted from"),
             ("PREDICTION", "optional: the class raster of the same run (the list mixes its "
                            "classes)"),
             ("CORRECTIONS", "optional: the corrections so far; places they cover are not "
                             "listed"),
             ("REVIEWED", "optional: the places reviewed so far; they are not listed"),
             ("COUNT", f"places to list (default {PLACES})"),
             ("CELL_SIZE", f"a place's side in pixels of the uncertainty raster (default "
                           f"{PLACE_PX})"),
             ("EXTENT", "optional: only this extent (e.g. the map view)"),
             ("OUTPUT", "the places: rank, and uncertainty from 0 (sure) to 1")])

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("UNCERTAINTY", "Uncertainty raster"))
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Image"))
        self.addParameter(QgsProcessingParameterRasterLayer(
            "PREDICTION", "The model's class raster", optional=True))
        for name, description in (("CORRECTIONS", "Corrections"),
                                  ("REVIEWED", "Reviewed places")):
            self.addParameter(QgsProcessingParameterFeatureSource(
                name, description, [QgsProcessing.TypeVectorPolygon], optional=True))
        self.add_int("COUNT", "Places", PLACES, minimum=1)
        self.add_int("CELL_SIZE", "Place size (pixels)", PLACE_PX, minimum=1)
        self.addParameter(QgsProcessingParameterExtent(
            "EXTENT", "Only this extent (empty: the whole raster)", optional=True))
        self.addParameter(QgsProcessingParameterVectorDestination(
            "OUTPUT", "Places to check", QgsProcessing.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputNumber("PLACES", "Places listed"))

    def processAlgorithm(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> Dict[str, Any]:  # noqa: N802
        require_engine()
        from engine.analysis.places import review_places

        output = self.output(parameters, "OUTPUT", context)
        places = EngineRun(context, feedback, [output]).call(
            review_places, self.raster_input(parameters, "UNCERTAINTY", context, feedback),
            self.raster_input(parameters, "INPUT", context, feedback), output,
            self.raster_input(parameters, "PREDICTION", context, feedback),
            self.vector_input(parameters, "CORRECTIONS", context, feedback),
            self.vector_input(parameters, "REVIEWED", context, feedback),
            self.parameterAsInt(parameters, "COUNT", context),
            self.parameterAsInt(parameters, "CELL_SIZE", context),
            self.extent_bounds(parameters, "EXTENT", "UNCERTAINTY", context),
            option_names={"output": self.parameterDefinition("OUTPUT").description()},
            produces=[output])
        for place in places:
            feedback.pushInfo(f"{place.rank}. {100 * place.uncertainty:.0f} % unsure")
        return {"OUTPUT": output, "PLACES": len(places)}
