"""``rs_seg:detect_change``: a change map between two dates."""
from __future__ import annotations

from typing import Any, Dict, Optional

from qgis.core import (QgsProcessing, QgsProcessingContext, QgsProcessingException,
                       QgsProcessingFeedback, QgsProcessingOutputNumber,
                       QgsProcessingParameterBoolean,
                       QgsProcessingParameterFileDestination,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterDestination,
                       QgsProcessingParameterRasterLayer, QgsProcessingParameterVectorDestination,
                       QgsProcessingUtils)

from ..layers import (style_change_polygons, style_change_raster, style_from_to_raster,
                      style_on_load, style_probability_raster)
from .base import (BACKEND_HELP, FORMAT_HELP, EngineRun, RsSegAlgorithm, help_html,
                   require_engine)
from .model_options import HELP, add_model_options, load_model

METHODS = ["auto", "model", "cva", "pcc"]
METHOD_LABELS = {"auto": "Change model when one is given, else change vector analysis",
                 "model": "Change model", "cva": "Change vector analysis (no model)",
                 "pcc": "Compare two classifications (segmentation model)"}


class DetectChangeAlgorithm(RsSegAlgorithm):
    ID = "detect_change"
    DISPLAY = "Detect change"
    GROUP = "Change detection"
    GROUP_ID = "change"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return help_html(
            "Maps what changed between a 'before' and an 'after' image: a 0/1 change raster "
            "(change shown in red), optionally the change probability, change polygons with "
            "areas and, with a segmentation model, the from-to classes of every change. The "
            "dates may differ in CRS, resolution and extent: the after image is aligned onto "
            "the before image over their intersection.",
            [("INPUT_T1 / INPUT_T2", "the before and after images (same bands)"),
             ("METHOD", "auto (default): the change model when one is given, else change "
                        "vector analysis; model: a trained change model; cva: change vector "
                        "analysis with an automatic (Otsu) cut, no training needed; pcc: "
                        "post-classification comparison with the segmentation model"),
             ("MODEL", "a change model file (METHOD=model)"),
             ("DEVICE", "auto, cpu or cuda"),
             ("TILE_SIZE / OVERLAP / BATCH_SIZE", "empty: the model's tiling, batch 8"),
             ("GSD / INPUT_GSD", "auto reads the dates at the change model's ground sampling "
                                 "distance when theirs differs by more than 25 %; native, or "
                                 "metres; INPUT_GSD for rasters without a CRS"),
             ("MATCH_HISTOGRAMS", "map the after image's band distributions onto the before "
                                  "image's first (other sensor, season or exposure)"),
             ("THRESHOLD", "change probability from which a pixel is changed (default 0.5; "
                           "higher = fewer, surer changes)"),
             ("SEGMENTATION_MODEL", "optional segmentation model classifying both dates, for "
                                    "from-to change"),
             ("OUTPUT", "change raster (0 no change, 1 change, 255 nodata)"),
             ("OUTPUT_PROBABILITY", "optional change probability (uint8, 254 = 1.0)"),
             ("OUTPUT_VECTOR", "optional change polygons (GeoPackage) with area_m2"),
             ("OUTPUT_FROM_TO", "optional from-to raster (code = from × classes + to + 1; "
                                "0 unchanged)"),
             ("OUTPUT_FROM_TO_TABLE", "optional CSV of from-to areas (a JSON copy beside it)"),
             HELP, FORMAT_HELP, BACKEND_HELP])

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT_T1", "Before (date 1)"))
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT_T2", "After (date 2)"))
        self.add_enum("METHOD", "Method", METHODS, "auto", labels=METHOD_LABELS)
        self.add_model(description="Change model (empty: change vector analysis)", optional=True)
        self.add_device()
        self.add_tiling()
        self.add_backend()
        self.add_gsd()
        self.addParameter(QgsProcessingParameterBoolean(
            "MATCH_HISTOGRAMS", "Match the after image's histograms to the before image's",
            defaultValue=False, optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            "THRESHOLD", "Change threshold", QgsProcessingParameterNumber.Double, 0.5,
            minValue=0.0, maxValue=1.0))
        self.add_model("SEGMENTATION_MODEL", "Segmentation model (for from-to change)",
                       optional=True)
        add_model_options(self, threshold=False)
        self.add_format()
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Change"))
        self.addParameter(QgsProcessingParameterRasterDestination(
            "OUTPUT_PROBABILITY", "Change probability", optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterVectorDestination(
            "OUTPUT_VECTOR", "Change polygons", QgsProcessing.TypeVectorPolygon, optional=True,
            createByDefault=False))
        self.addParameter(QgsProcessingParameterRasterDestination(
            "OUTPUT_FROM_TO", "From-to classes", optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUTPUT_FROM_TO_TABLE", "From-to area table", "CSV files (*.csv)", optional=True,
            createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber("CHANGED_FRACTION",
                                                 "Fraction of valid pixels changed"))

    def processAlgorithm(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> Dict[str, Any]:  # noqa: N802
        method = self.parameterAsEnumString(parameters, "METHOD", context) or "auto"
        model = self.parameterAsFile(parameters, "MODEL", context) or None
        if method == "auto":
            method = "model" if model else "cva"
        segmentation = self.parameterAsFile(parameters, "SEGMENTATION_MODEL", context) or None
        # CVA runs on torch; a change or segmentation model alone may be ONNX (onnxruntime)
        require_engine(*(() if method == "cva" else
                         [m for m in (model if method == "model" else None, segmentation) if m]))
        from engine.analysis.change import detect_change

        if method == "model" and model is None:
            raise QgsProcessingException("METHOD is 'model' but no MODEL was given; pick a "
                                         "change model file, or set METHOD to cva (no model)")
        output = self.output(parameters, "OUTPUT", context)
        probability = self.output(parameters, "OUTPUT_PROBABILITY", context)
        vector = self.output(parameters, "OUTPUT_VECTOR", context)
        from_to = self.output(parameters, "OUTPUT_FROM_TO", context)
        table = self.parameterAsFileOutput(parameters, "OUTPUT_FROM_TO_TABLE", context) or None
        if segmentation and not from_to:
            # the engine always writes from-to products with a segmentation model: keep them
            # in the temporary folder rather than beside OUTPUT
            from_to = QgsProcessingUtils.generateTempFilename("from_to.tif")
        run = EngineRun(context, feedback, [output, probability, vector, from_to, table])
        device = self.parameterAsEnumString(parameters, "DEVICE", context)
        if method == "model":
            model = load_model(self, run, model, device, parameters, context)
        result = run.call(
            detect_change, model if method == "model" else method,
            self.raster_input(parameters, "INPUT_T1", context, feedback),
            self.raster_input(parameters, "INPUT_T2", context, feedback), output,
            probabilities=probability, polygons=vector,
            threshold=self.parameterAsDouble(parameters, "THRESHOLD", context),
            device=device, segmentation_model=segmentation, from_to=from_to, from_to_table=table,
            produces=[output, probability, vector, from_to, table],
            match_histograms=self.parameterAsBoolean(parameters, "MATCH_HISTOGRAMS", context),
            output_format=self.output_format(parameters, context),
            **self.backend_options(parameters, context),
            **self.tiling(parameters, context), **self.gsd_options(parameters, context))
        feedback.pushInfo(f"{100 * result['changed_fraction']:.2f} % of the valid pixels changed")
        style_on_load(context, output, style_change_raster)
        style_on_load(context, vector, style_change_polygons)
        style_on_load(context, from_to, style_from_to_raster)
        style_on_load(context, probability, style_probability_raster)
        return {"OUTPUT": output, "OUTPUT_PROBABILITY": probability, "OUTPUT_VECTOR": vector,
                "OUTPUT_FROM_TO": result.get("from_to"),
                "OUTPUT_FROM_TO_TABLE": result.get("from_to_table"),
                "CHANGED_FRACTION": result["changed_fraction"]}
