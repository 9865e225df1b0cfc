"""``rs_seg:segment_folder``: segment every raster of a folder (or a list) with one model."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from qgis.core import (QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback,
                       QgsProcessingOutputNumber, QgsProcessingParameterBoolean,
                       QgsProcessingParameterFile, QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterString)

from .base import BACKEND_HELP, FORMAT_HELP, EngineRun, RsSegAlgorithm, help_html, require_engine


class SegmentFolderAlgorithm(RsSegAlgorithm):
    ID = "segment_folder"
    DISPLAY = "Segment folder of rasters"
    GROUP = "Inference"
    GROUP_ID = "inference"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return help_html(
            "Classifies every raster of a folder (or of a list file) with one segmentation "
            "model, loaded once, and writes one class raster per input into the output folder. "
            "All output names are checked before the first raster is processed; a raster that "
            "fails is reported and the others are still written.",
            [("INPUT_FOLDER", "a folder; its *.tif, *.tiff, *.vrt, *.img and *.jp2 files are "
                              "processed in name order"),
             ("INPUT_LIST", "or a text file listing rasters, one a line (# comments; relative "
                            "paths are relative to the list's folder)"),
             ("MODEL", "a segmentation model file (.rsmodel or .onnx)"),
             ("DEVICE", "auto (CUDA GPU when available), cpu or cuda"),
             ("TILE_SIZE / OVERLAP / BATCH_SIZE", "empty: the model's tile and overlap, "
                                                  "batch 8"),
             ("OUTPUT_NAME", "file name pattern; {stem} is the input's name without extension "
                             "(default {stem}.tif)"),
             ("SKIP_EXISTING", "skip rasters whose output already exists (otherwise the run "
                               "is refused before it starts)"),
             FORMAT_HELP,
             ("OUTPUT_FOLDER", "where the class rasters are written"),
             BACKEND_HELP,
             ("WRITTEN / FAILED / SKIPPED", "how many rasters were written, failed or "
                                            "skipped")])

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterFile(
            "INPUT_FOLDER", "Input folder", behavior=QgsProcessingParameterFile.Folder,
            optional=True))
        self.addParameter(QgsProcessingParameterFile(
            "INPUT_LIST", "Or: list of rasters (text file, one path a line)",
            behavior=QgsProcessingParameterFile.File, optional=True))
        self.add_model()
        self.add_device()
        self.add_tiling()
        self.add_backend()
        self.addParameter(QgsProcessingParameterString(
            "OUTPUT_NAME", "Output file name ({stem}: the input's name)",
            defaultValue="{stem}.tif"))
        self.addParameter(QgsProcessingParameterBoolean(
            "SKIP_EXISTING", "Skip rasters whose output exists", defaultValue=False))
        self.add_format()
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER",
                                                                  "Output folder"))
        for name, description in (("WRITTEN", "Rasters written"), ("FAILED", "Rasters failed"),
                                  ("SKIPPED", "Rasters skipped")):
            self.addOutput(QgsProcessingOutputNumber(name, description))

    def processAlgorithm(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> Dict[str, Any]:  # noqa: N802
        model = self.parameterAsFile(parameters, "MODEL", context)
        require_engine(model)
        from engine.inference.batch import collect_inputs, failure_summary, predict_many

        folder = self.parameterAsFile(parameters, "INPUT_FOLDER", context) or None
        listing = self.parameterAsFile(parameters, "INPUT_LIST", context) or None
        if not folder and not listing:
            raise QgsProcessingException("give INPUT_FOLDER (a folder of rasters) or INPUT_LIST "
                                         "(a text file listing them)")
        out_dir = self.parameterAsString(parameters, "OUTPUT_FOLDER", context)
        run = EngineRun(context, feedback)
        inputs: List[Any] = run.call(collect_inputs, [folder] if folder else [], listing,
                                     job=False)
        result = run.call(predict_many, model, inputs, out_dir,
                          output_name=self.parameterAsString(parameters, "OUTPUT_NAME", context)
                          or "{stem}.tif",
                          skip_existing=self.parameterAsBoolean(parameters, "SKIP_EXISTING",
                                                                context),
                          device=self.parameterAsEnumString(parameters, "DEVICE", context),
                          output_format=self.output_format(parameters, context),
                          **self.backend_options(parameters, context),
                          **self.tiling(parameters, context))
        for path in result["skipped"]:
            feedback.pushInfo(f"skipped {path}: its output exists")
        summary = failure_summary(result)
        if summary:
            feedback.reportError(summary)
        feedback.pushInfo(f"{len(result['written'])} written, {len(result['skipped'])} skipped, "
                          f"{len(result['failed'])} failed in {result['seconds']:.1f} s")
        return {"OUTPUT_FOLDER": out_dir, "WRITTEN": len(result["written"]),
                "FAILED": len(result["failed"]), "SKIPPED": len(result["skipped"])}
