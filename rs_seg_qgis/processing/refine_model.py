"""``rs_seg:refine_model``: one round of the analyst's loop (``engine refine``).

Fine-tunes a model on the analyst's corrections (plus the places they confirmed and the model's
own confident predictions), scores it on held-out corrections, and optionally re-predicts the
image, or only an extent of it, and shows what changed since the previous round.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from qgis.core import (QgsProcessing, QgsProcessingContext, QgsProcessingException,
                       QgsProcessingFeedback, QgsProcessingOutputNumber,
                       QgsProcessingParameterExtent, QgsProcessingParameterFeatureSource,
                       QgsProcessingParameterField, QgsProcessingParameterFileDestination,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterDestination,
                       QgsProcessingParameterRasterLayer)

from ..layers import style_class_raster, style_on_load
from .base import MODEL_FILTER, EngineRun, RsSegAlgorithm, help_html, require_engine

DEFAULT_BUDGET_S = 120  # engine.training.refine.DEFAULT_BUDGET_S (the engine may be missing)
STARTS = ("auto", "parent", "fresh")  # engine.training.refine_start.STARTS


class RefineModelAlgorithm(RsSegAlgorithm):
    ID = "refine_model"
    DISPLAY = "Refine model on corrections"
    GROUP = "Training"
    GROUP_ID = "training"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return help_html(
            "Fine-tunes a segmentation model, within a time budget, on the polygons you "
            "corrected, the places you reviewed without correcting (confirmed) and a sample of "
            "the model's own confident predictions, so it learns your imagery without "
            "forgetting what it already did right. A share of the corrections is held out: the "
            "new model's accuracy on them, next to its parent's, is this round's honest score. "
            "The new model's card records its lineage (parent, round, corrections, date, "
            "scores).",
            [("INPUT", "the image the corrections were drawn on"),
             ("MODEL", "the model to refine (.rsmodel): the first model or the last round's"),
             ("CORRECTIONS", "polygons with the class they should have"),
             ("CLASS_FIELD", "their class field: the model's class values or names"),
             ("REVIEWED", "optional: places checked; those without a correction count as "
                          "confirmed"),
             ("PREDICTION / UNCERTAINTY", "optional: the model's class and uncertainty rasters "
                                          "of INPUT (Segment raster); else predicted around "
                                          "the corrections"),
             ("TIME_BUDGET", "training seconds (default 120)"),
             ("INIT_HEAD", "new: the corrections may add classes (the classifier is trained "
                           "anew)"),
             ("HELD_OUT", "share of each class's corrected pixels held out for the score (never "
                          "a class's last correction)"),
             ("START", "parent: fine-tune the model; fresh: train its network from random "
                       "weights; auto: fresh only for a model with no earlier round that had "
                       "less than half of the reviewed pixels right (a model from elsewhere "
                       "that is wrong here learns them faster afresh)"),
             ("OUTPUT_MODEL", "the refined model"),
             ("OUTPUT / OUTPUT_UNCERTAINTY", "optional: INPUT re-predicted with the refined "
                                             "model, and its uncertainty for the next round"),
             ("EXTENT", "optional: re-predict only this extent (e.g. the map view); the "
                        "outputs are then PREDICTION / UNCERTAINTY with the extent "
                        "re-predicted (the extent alone without them), and the difference "
                        "and changed area cover the extent"),
             ("OUTPUT_DIFFERENCE", "optional, with PREDICTION and OUTPUT: the new class where "
                                   "it changed")])

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Image"))
        self.add_model(description="Model to refine (.rsmodel)")
        self.addParameter(QgsProcessingParameterFeatureSource(
            "CORRECTIONS", "Corrections", [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterField(
            "CLASS_FIELD", "Class field", defaultValue="class",
            parentLayerParameterName="CORRECTIONS"))
        self.addParameter(QgsProcessingParameterFeatureSource(
            "REVIEWED", "Reviewed places", [QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(
            "PREDICTION", "The model's class raster of the image", optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(
            "UNCERTAINTY", "The model's uncertainty raster of the image", optional=True))
        self.add_int("TIME_BUDGET", "Training time budget (s)", DEFAULT_BUDGET_S, minimum=1)
        self.add_enum("INIT_HEAD", "Classifier", ["keep", "new"], "keep")
        held = QgsProcessingParameterNumber("HELD_OUT", "Share of corrections held out",
                                            QgsProcessingParameterNumber.Double, 0.25,
                                            minValue=0.0, maxValue=0.9)
        held.setFlags(held.flags() | held.FlagAdvanced)
        self.addParameter(held)
        self.add_enum("START", "Start from", list(STARTS), "auto")
        start = self.parameterDefinition("START")
        start.setFlags(start.flags() | start.FlagAdvanced)
        self.add_device()
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUTPUT_MODEL", "Refined model", MODEL_FILTER))
        self.addParameter(QgsProcessingParameterRasterDestination(
            "OUTPUT", "Re-predicted classes", optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterRasterDestination(
            "OUTPUT_UNCERTAINTY", "Re-predicted uncertainty", optional=True,
            createByDefault=False))
        self.addParameter(QgsProcessingParameterRasterDestination(
            "OUTPUT_DIFFERENCE", "Changed since the previous round", optional=True,
            createByDefault=False))
        self.addParameter(QgsProcessingParameterExtent(
            "EXTENT", "Re-predict only this extent (empty: the whole image)", optional=True))
        for name, description in (("ROUND", "Round"),
                                  ("HELD_OUT_ACCURACY", "Accuracy on held-out corrections"),
                                  ("PARENT_ACCURACY", "Parent's accuracy on them"),
                                  ("CHANGED_M2", "Area that changed class (m²)")):
            self.addOutput(QgsProcessingOutputNumber(name, description))

    def processAlgorithm(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> Dict[str, Any]:  # noqa: N802
        model = self.parameterAsFile(parameters, "MODEL", context)
        require_engine(model)
        from engine.training.refine import (check_difference, format_change, format_score,
                                            refine, repredict)

        image = self.raster_input(parameters, "INPUT", context, feedback)
        prediction = self.raster_input(parameters, "PREDICTION", context, feedback)
        uncertainty = self.raster_input(parameters, "UNCERTAINTY", context, feedback)
        out_model = self.parameterAsFileOutput(parameters, "OUTPUT_MODEL", context)
        output = self.output(parameters, "OUTPUT", context)
        unsure = self.output(parameters, "OUTPUT_UNCERTAINTY", context)
        difference = self.output(parameters, "OUTPUT_DIFFERENCE", context)
        if (unsure or difference) and not output:
            raise QgsProcessingException("OUTPUT_UNCERTAINTY and OUTPUT_DIFFERENCE come with the "
                                         "re-predicted classes: set OUTPUT too")
        fields = self.parameterAsFields(parameters, "CLASS_FIELD", context)
        run = EngineRun(context, feedback, [output, unsure, difference])
        run.call(check_difference, prediction, difference, job=False)  # before the training
        result = run.call(
            refine, model, image, self.vector_input(parameters, "CORRECTIONS", context, feedback),
            out_model, fields[0] if fields else "class", prediction, uncertainty,
            float(self.parameterAsInt(parameters, "TIME_BUDGET", context)),
            self.parameterAsEnumString(parameters, "INIT_HEAD", context) or "keep",
            self.parameterAsDouble(parameters, "HELD_OUT", context),
            device=self.parameterAsEnumString(parameters, "DEVICE", context),
            reviewed=self.vector_input(parameters, "REVIEWED", context, feedback),
            start=self.parameterAsEnumString(parameters, "START", context) or "auto",
            produces=[out_model], share=(0.0, 0.8 if output else 1.0))
        feedback.pushInfo(f"round {result['round']}: {result['corrections']} correction(s); "
                          + format_score(result))
        scores = result.get("scores") or {}
        outputs = {"OUTPUT_MODEL": out_model, "OUTPUT": output, "OUTPUT_UNCERTAINTY": unsure,
                   "OUTPUT_DIFFERENCE": difference, "ROUND": result["round"],
                   "HELD_OUT_ACCURACY": (scores.get("held_out") or {}).get("accuracy"),
                   "PARENT_ACCURACY": (scores.get("parent_held_out") or {}).get("accuracy"),
                   "CHANGED_M2": None}
        if output:
            again = run.call(repredict, out_model, image, output, prediction, difference, unsure,
                             self.parameterAsEnumString(parameters, "DEVICE", context),
                             self.extent_bounds(parameters, "EXTENT", "INPUT", context), uncertainty,
                             produces=[output, unsure, difference], share=(0.8, 1.0))
            if again.get("compare"):
                feedback.pushInfo(format_change(again["compare"]))
                outputs["CHANGED_M2"] = again["compare"]["changed_m2"]
            style_on_load(context, output, style_class_raster)
            if difference:
                style_on_load(context, difference, style_class_raster)
        return outputs
