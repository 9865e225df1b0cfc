"""``rs_seg:segment``: classify a raster layer with a segmentation model."""
from __future__ import annotations

import functools
from typing import Any, Dict, List, Optional

from qgis.core import (QgsProcessing, QgsProcessingContext,
                       QgsProcessingFeedback, QgsProcessingParameterExtent, QgsProcessingUtils,
                       QgsProcessingParameterRasterDestination, QgsProcessingParameterRasterLayer,
                       QgsProcessingParameterString, QgsProcessingParameterVectorDestination)

from .. import sources
from ..layers import raster_classes, style_class_polygons, style_class_raster, style_on_load
from .base import (BACKEND_HELP, FORMAT_HELP, TTA_HELP, EngineRun, RsSegAlgorithm, help_html,
                   require_engine)
from .model_options import (HELP, add_model_options, comma_numbers, layer_name, load_model,
                            other_outputs)
from .outline_params import OUTLINE_HELP, add_outline_parameters, outline_options


def parse_bands(text: str) -> Optional[List[int]]:
    """'1,2,3' → [1, 2, 3]; empty → None (the model's bands)."""
    return comma_numbers(text, int, "BANDS must be comma-separated band numbers such as 1,2,3")


class SegmentAlgorithm(RsSegAlgorithm):
    ID = "segment"
    DISPLAY = "Segment raster"
    GROUP = "Inference"
    GROUP_ID = "inference"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return help_html(
            "Classifies every pixel of a raster layer with a segmentation model (.rsmodel) and "
            "writes a class raster styled with the model's class names and colours. The raster "
            "is processed in overlapping tiles, streamed, so any size works.",
            [("INPUT", "the image; its bands must match the model's (e.g. R,G,B,NIR)"),
             ("AUX_INPUT", "auxiliary raster (e.g. a DSM) when the model takes one; aligned "
                           "onto the image on the fly"),
             ("MODEL", "a segmentation model file"),
             ("DEVICE", "auto (CUDA GPU when available), cpu or cuda"),
             ("TILE_SIZE / OVERLAP / BATCH_SIZE", "empty: the model's tile (e.g. 512) and "
                                                  "overlap (e.g. 64), batch 8; lower the batch "
                                                  "when the GPU runs out of memory"),
             ("EXTENT", "only this area (default: the whole layer)"),
             ("BANDS", "which layer bands feed the model, in its order, e.g. 1,2,3"),
             ("GSD / INPUT_GSD", "auto reads the image at the model's ground sampling distance "
                                 "when they differ by more than 25 % (output stays on the "
                                 "image's grid), native reads it as it is, or give metres; "
                                 "INPUT_GSD is the pixel size of a raster without a CRS"),
             ("OUTPUT", "class raster (GeoTIFF, nodata 255)"),
             ("OUTPUT_PROBABILITY", "optional per-class probabilities (uint8, 254 = 1.0)"),
             ("OUTPUT_UNCERTAINTY", "optional per-pixel uncertainty (uint8, 0 certain … 254 "
                                    "a tie between the two likeliest classes), for review"),
             ("OUTPUT_VECTOR", "optional polygons of the classes (GeoPackage): buildings "
                               "regularised and natural classes smoothed as the model card "
                               "says, with class, area, perimeter, mean/minimum class "
                               "probability and provenance (model, its SHA-256, date)"),
             *OUTLINE_HELP,
             HELP, TTA_HELP, FORMAT_HELP, BACKEND_HELP],
            "Web and other non-file layers are first saved over the extent at the model's "
            "ground sampling distance.")

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Input raster"))
        self.addParameter(QgsProcessingParameterRasterLayer(
            "AUX_INPUT", "Auxiliary raster (e.g. DSM)", optional=True))
        self.add_model()
        self.add_device()
        self.add_tiling()
        self.add_backend()
        self.add_gsd()
        self.add_tta()
        self.addParameter(QgsProcessingParameterExtent("EXTENT", "Extent", optional=True))
        self.addParameter(QgsProcessingParameterString(
            "BANDS", "Bands (e.g. 1,2,3; empty: the model's)", optional=True))
        add_model_options(self)
        self.add_format()
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Classes"))
        self.addParameter(QgsProcessingParameterRasterDestination(
            "OUTPUT_PROBABILITY", "Class probabilities", optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterRasterDestination(
            "OUTPUT_UNCERTAINTY", "Uncertainty", optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterVectorDestination(
            "OUTPUT_VECTOR", "Class polygons", QgsProcessing.TypeVectorPolygon, optional=True,
            createByDefault=False))
        add_outline_parameters(self, advanced=True)

    @staticmethod
    def name_layer(context: QgsProcessingContext, path: str, name: str) -> None:
        """Name the output layer by its classes when the run loads it."""
        if context.willLoadLayerOnCompletion(path):
            context.layerToLoadOnCompletionDetails(path).name = name

    @staticmethod
    def load_layer(context: QgsProcessingContext, path: str, name: str) -> None:
        """Load another model output's class raster, styled, when the run loads layers."""
        if context.project() is None:
            return
        context.addLayerToLoadOnCompletion(
            path, QgsProcessingContext.LayerDetails(name, context.project(), name))
        style_on_load(context, path, style_class_raster)

    def processAlgorithm(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> Dict[str, Any]:  # noqa: N802
        require_engine(self.parameterAsFile(parameters, "MODEL", context))
        from engine.inference.pipeline import image_band_statistics, predict
        from engine.analysis.outlines import check_outline_options
        from engine.analysis.vectorize import vectorize

        output = self.output(parameters, "OUTPUT", context)
        probability = self.output(parameters, "OUTPUT_PROBABILITY", context)
        vector = self.output(parameters, "OUTPUT_VECTOR", context)
        unsure = self.output(parameters, "OUTPUT_UNCERTAINTY", context)
        run = EngineRun(context, feedback, [output, probability, vector, unsure])
        model = self.parameterAsFile(parameters, "MODEL", context)
        device = self.parameterAsEnumString(parameters, "DEVICE", context)
        lm = load_model(self, run, model, device, parameters, context)
        card = lm.card
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        extent = self.parameterAsExtent(parameters, "EXTENT", context, layer.crs())
        image = self.raster_input(parameters, "INPUT", context, feedback, extent,
                                  card.get("gsd_m"))
        outlines = outline_options(self, parameters, context, "OUTPUT_VECTOR") if vector else {}
        if vector:  # a mistyped class or tolerance fails now, not after the prediction
            run.call(check_outline_options, card["classes"], image, job=False, **outlines)
        aux_layer = self.parameterAsRasterLayer(parameters, "AUX_INPUT", context)
        aux_extent = (self.parameterAsExtent(parameters, "EXTENT", context, aux_layer.crs())
                      if aux_layer else None)
        aux = self.raster_input(parameters, "AUX_INPUT", context, feedback, aux_extent)
        bands = parse_bands(self.parameterAsString(parameters, "BANDS", context))
        whole = sources.gdal_file(layer)
        if whole is not None and image != whole:  # a part: normalised as in the whole layer
            statistics = run.call(image_band_statistics, card, whole, bands, job=False)
        else:
            statistics = None
        options = dict(aux=aux, device=device, bands=bands, statistics=statistics,
                       output_format=self.output_format(parameters, context),
                       **self.backend_options(parameters, context),
                       **self.tiling(parameters, context), **self.gsd_options(parameters, context),
                       **self.tta_option(parameters, context))
        if vector and not probability:  # the polygons' prob_mean / prob_min need them
            probability_for_polygons = QgsProcessingUtils.generateTempFilename("probabilities.tif")
        else:
            probability_for_polygons = probability
        result = run.call(predict, lm, image, output, probabilities=probability_for_polygons,
                          uncertainty=unsure, produces=[output, probability, unsure],
                          share=(0.0, 0.9 if vector else 1.0), **options)
        self.name_layer(context, output, layer_name(card))
        chosen = self.optional_int(parameters, "OUTPUT_INDEX", context)
        for index, name, path in other_outputs(lm, output, chosen):
            other = load_model(self, run, model, device, parameters, context, output=index)
            run.call(predict, other, image, path, produces=[path],
                     share=(0.0, 0.9 if vector else 1.0), **options)
            feedback.pushInfo(f"model output {index} ('{name}') → {path}")
            self.load_layer(context, path, f"{name}: {layer_name(other.card)}")
        feedback.pushInfo(f"{result['width']}×{result['height']} px, {result['windows']} "
                          f"windows on {result['device']} in {result['seconds']:.1f} s "
                          f"({result['mpix_per_s']:.2f} MPix/s)")
        if vector:
            run.call(vectorize, output, vector, produces=[vector], share=(0.9, 1.0),
                     probabilities=probability_for_polygons, model=model, **outlines)
            style_on_load(context, vector, functools.partial(
                style_class_polygons, classes=raster_classes(output)))
        style_on_load(context, output, style_class_raster)
        return {"OUTPUT": output, "OUTPUT_PROBABILITY": probability, "OUTPUT_VECTOR": vector,
                "OUTPUT_UNCERTAINTY": unsure}
