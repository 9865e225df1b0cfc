"""What every RS Seg algorithm shares: metadata, the engine bridge, inputs, common parameters.

Algorithms run threaded (QGIS's default; no FlagNoThreading) and cancellable.  The engine is
imported inside ``processAlgorithm`` only, so the provider lists its algorithms even when torch is
missing; running one then fails early with the exact install command.
"""
from __future__ import annotations

import html
import importlib.util
import os
import re
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from qgis.core import (QgsProcessing, QgsProcessingAlgorithm, QgsProcessingContext,
                       QgsProcessingException, QgsProcessingFeedback, QgsProcessingParameterEnum,
                       QgsProcessingParameterFeatureSource, QgsProcessingParameterField,
                       QgsProcessingParameterFile, QgsProcessingParameterNumber,
                       QgsProcessingParameterString,
                       QgsRasterLayer, QgsRectangle)

from .. import sources
from ..deps import install_hint, missing_modules, python_command

MODEL_FILTER = "RS Seg models (*.rsmodel);;All files (*)"
# Models an algorithm runs: RS Seg files or ONNX (Deepness-format or exported) models.
INPUT_MODEL_FILTER = ("Models (*.rsmodel *.onnx);;RS Seg models (*.rsmodel);;ONNX models (*.onnx)"
                      ";;All files (*)")
# What running an ONNX model needs (no torch): onnxruntime and the GIS stack (the onnx package
# is optional: it adds the custom-operator check before onnxruntime sees the graph).
ONNX_MODULES = ("onnxruntime", "rasterio", "numpy")
MODEL_PARAMETERS = ("MODEL", "SEGMENTATION_MODEL")
DEVICES = ["auto", "cpu", "cuda"]
BACKENDS = ["auto", "torch", "onnx"]  # engine.inference.backends.BACKENDS
PRECISIONS = ["fp32", "int8"]
BACKEND_HELP = ("BACKEND / PRECISION", "auto runs the network through ONNX Runtime on the CPU "
                "when the model exports (1.5–2× faster than torch in the benchmarks; the graph "
                "is made once and cached), else torch; int8 needs the model quantised first "
                "(Models ▸ Quantise model to int8)")
FORMATS = ["gtiff", "cog"]  # engine.io.cog.FORMATS (not imported: the engine may be missing)
DEVICE_LABELS = {"auto": "Automatic (the GPU when there is one)", "cpu": "Processor (CPU)",
                 "cuda": "NVIDIA GPU (CUDA)"}
FORMAT_LABELS = {"gtiff": "GeoTIFF (tiled, compressed)",
                 "cog": "Cloud-Optimized GeoTIFF (with overviews)"}
FORMAT_HELP = ("FORMAT", "gtiff: tiled, compressed GeoTIFF; cog: Cloud-Optimized GeoTIFF with "
                         "overviews (mode for classes, average for probabilities), for web "
                         "serving and fast zoomed-out display")
TTA_MODES = ["none", "flips", "d4"]  # engine.inference.tta.TTA_MODES (not imported, as FORMATS)
TTA_HELP = ("TTA", "test-time augmentation: each window is also seen flipped (flips: 4 passes) "
                   "or flipped and turned by quarter turns (d4: 8 passes) and the probabilities "
                   "are averaged; that many times slower, often a little more accurate")
MODEL_WRAPPER = "rs_seg_qgis.processing.model_widget.ModelFileWrapper"  # the dialogs' picker
TEXT_INTERVAL_S = 2.0  # at most one progress text per interval: the text goes to the log too


def engine_problem(models: Sequence[Optional[str]] = ()) -> Optional[str]:
    """The install hint when a module needed to run with ``models`` is missing, else None.

    Only ONNX models (all of them ``.onnx``): onnxruntime instead of torch.
    """
    chosen = [str(m) for m in models if m]
    if not chosen or not all(m.lower().endswith(".onnx") for m in chosen):
        missing = missing_modules()
        return install_hint(missing) if missing else None
    missing = [m for m in ONNX_MODULES if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    from engine.compute.onnx_runtime import ONNXRUNTIME_PIN
    pins = {"onnxruntime": ONNXRUNTIME_PIN}
    pip = [pins[m] for m in missing if m in pins]
    rest = [m for m in missing if m not in pins]
    hint = (f"RS Seg needs {', '.join(pip)} in QGIS's Python to run ONNX models. Install with: "
            f"{python_command()} -m pip install {' '.join(pip)}" if pip else "")
    return " ".join(h for h in (hint, install_hint(rest) if rest else "") if h)


def require_engine(*models: Optional[str]) -> None:
    """Raise the install hint as a QgsProcessingException when a dependency for running with
    ``models`` is missing (ONNX models need onnxruntime, not torch)."""
    problem = engine_problem(models)
    if problem:
        raise QgsProcessingException(problem)


def architectures(task: str) -> List[str]:
    """Built-in architectures for ``task``, read without importing torch (QGIS start-up stays
    light; without torch the algorithms still list and then explain what to install)."""
    from engine.formats.catalog import architectures as names
    return names(task)


def help_html(summary: str, parameters: Sequence[Tuple[str, str]], notes: str = "") -> str:
    """Help text: a summary, one line per parameter (name: what it is, typical values), notes."""
    def text(s: str) -> str:
        return html.escape(s, quote=False)  # apostrophes stay readable in qgis_process help
    items = "".join(f"<dt><b>{text(n)}</b></dt><dd>{text(d)}</dd>" for n, d in parameters)
    tail = f"<p>{text(notes)}</p>" if notes else ""
    return f"<p>{text(summary)}</p><dl>{items}</dl>{tail}"


class FeedbackBridge:
    """The engine's ``progress(fraction, message)`` and ``cancelled()`` on a QGIS feedback.

    ``start``..``end`` is the part of the bar this engine call fills.  Negative fractions are log
    lines.  Progress texts are throttled (same stage within ``TEXT_INTERVAL_S`` is dropped)
    because QGIS also appends each one to the log.
    """

    def __init__(self, feedback: Optional[QgsProcessingFeedback], start: float = 0.0,
                 end: float = 1.0) -> None:
        self.feedback = feedback
        self.start, self.end = start, end
        self._stage: Optional[str] = None
        self._last_text = 0.0

    def progress(self, fraction: float, message: str = "") -> None:
        if self.feedback is None:
            return
        if fraction < 0:
            self.feedback.pushInfo(message)
            return
        self.feedback.setProgress(100.0 * (self.start + fraction * (self.end - self.start)))
        stage = message.rstrip("0123456789/ .%")
        now = time.monotonic()
        if message and (stage != self._stage or now - self._last_text >= TEXT_INTERVAL_S
                        or fraction >= 1.0):
            self._stage, self._last_text = stage, now
            self.feedback.setProgressText(message)

    def cancelled(self) -> bool:
        return self.feedback is not None and self.feedback.isCanceled()


class EngineRun:
    """The engine calls of one algorithm run.

    Turns ``EngineError`` into ``QgsProcessingException`` (the message is the user's answer) and
    ``Cancelled`` into a QgsProcessingException too, so QGIS treats the run as not successful.
    On either, files written by earlier calls of this run are removed and the run's outputs are
    taken off the context's load-on-completion list, so nothing half-made reaches the project.
    """

    def __init__(self, context: QgsProcessingContext, feedback: Optional[QgsProcessingFeedback],
                 outputs: Sequence[Optional[str]] = ()) -> None:
        self.context, self.feedback = context, feedback
        self.outputs = [o for o in outputs if o]
        self.written: List[str] = []

    def call(self, fn: Callable[..., Any], *args: Any, produces: Sequence[Optional[str]] = (),
             share: Tuple[float, float] = (0.0, 1.0), job: bool = True,
             task_name: str = "", **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` (with progress/cancelled unless ``job`` is False);
        ``produces`` are the files it writes, ``share`` (from, to) its part of the progress bar
        (a name no engine function takes as a keyword); ``task_name`` ("training") opens the
        answer to a cancel, which says what the engine kept (``Cancelled.kept``), if anything."""
        from engine.jobs import Cancelled, EngineError
        if job:
            bridge = FeedbackBridge(self.feedback, *share)
            kwargs.update(progress=bridge.progress, cancelled=bridge.cancelled)
        try:
            result = fn(*args, **kwargs)
        except Cancelled as exc:
            self.abandon()
            raise QgsProcessingException(
                f"{task_name + ' ' if task_name else ''}cancelled by the user; "
                f"{exc.kept or 'no output was written'}") from None
        except EngineError as exc:
            self.abandon()
            raise QgsProcessingException(str(exc)) from None
        except Exception as exc:
            self.abandon()
            from engine.io.rasters import read_failure
            failure = read_failure(exc)  # a damaged raster: one sentence, not GDAL's traceback
            if failure is not None:
                raise QgsProcessingException(str(failure)) from None
            raise  # an unexpected failure: the traceback is the report
        self.written.extend(p for p in produces if p)
        return result

    def abandon(self) -> None:
        """Remove this run's finished files and stop QGIS from loading its outputs."""
        for path in self.written:
            if os.path.exists(path):
                os.remove(path)
        self.written.clear()
        keep = {k: v for k, v in self.context.layersToLoadOnCompletion().items()
                if k not in self.outputs}
        self.context.setLayersToLoadOnCompletion(keep)


class RsSegAlgorithm(QgsProcessingAlgorithm):
    """Base of the RS Seg algorithms: metadata from class attributes, shared helpers."""

    ID = ""
    DISPLAY = ""
    GROUP = ""
    GROUP_ID = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # help is written with parameter ids (what scripts use); the form shows labels
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("shortHelpString")
        if own is not None:
            cls.shortHelpString = lambda self, _own=own: self.labelled_help(_own(self))

    def labelled_help(self, text: str) -> str:
        """``text`` with each ``<dt>`` parameter id shown as its label on the form (id after)."""
        def label(match: "re.Match[str]") -> str:
            ids = match.group(1).split(" / ")
            found = [self.parameterDefinition(i) or self.outputDefinition(i) for i in ids]
            names = [d.description() if d is not None else i for d, i in zip(found, ids)]
            if names == ids:
                return match.group(0)
            return (f"<dt><b>{html.escape(' / '.join(names), quote=False)}</b> "
                    f"<small>({match.group(1)})</small></dt>")
        return re.sub(r"<dt><b>(.*?)</b></dt>", label, text)

    def name(self) -> str:
        return self.ID

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return self.DISPLAY

    def group(self) -> str:
        return self.GROUP

    def groupId(self) -> str:  # noqa: N802 (QGIS API)
        return self.GROUP_ID

    def createInstance(self) -> "RsSegAlgorithm":  # noqa: N802 (QGIS API)
        return type(self)()

    def checkParameterValues(self, parameters: Dict[str, Any],  # noqa: N802 (QGIS API)
                             context: QgsProcessingContext) -> Tuple[bool, str]:
        models = [self.parameterAsFile(parameters, name, context) for name in MODEL_PARAMETERS
                  if self.parameterDefinition(name) is not None]
        problem = engine_problem(models)
        if problem:
            return False, problem
        from engine.jobs import EngineError
        from . import outputs
        try:  # an output that is an input, two outputs one file, a raster not named .tif
            outputs.check(self, parameters, context)
        except EngineError as exc:
            return False, str(exc)
        return super().checkParameterValues(self._indexed(parameters), context)

    # ---- common parameters --------------------------------------------------------------------

    def add_model(self, name: str = "MODEL", description: str = "Model file (.rsmodel or .onnx)",
                  optional: bool = False) -> None:
        """A model file; the dialogs offer the models folder's models by name (a path still
        works: typed, browsed, or from scripts)."""
        param = QgsProcessingParameterFile(
            name, description, behavior=QgsProcessingParameterFile.File,
            fileFilter=INPUT_MODEL_FILTER, optional=optional)
        param.setMetadata({"widget_wrapper": {"class": MODEL_WRAPPER}})
        self.addParameter(param)

    def add_enum(self, name: str, description: str, options: List[str],
                 default: Optional[str] = None, optional: bool = False,
                 labels: Optional[Dict[str, str]] = None) -> None:
        """An enum whose values are the option strings (stable in scripts and saved models).

        With ``labels`` (value → words) the form shows the words; scripts still pass the value
        (``DEVICE=cpu``) or its index, read back by :meth:`parameterAsEnumString`.
        """
        if labels:
            param = QgsProcessingParameterEnum(
                name, description, options=[labels.get(o, o) for o in options],
                defaultValue=options.index(default) if default in options else None,
                optional=optional)
            self.__dict__.setdefault("_enum_values", {})[name] = list(options)
        else:
            param = QgsProcessingParameterEnum(name, description, options=options,
                                               defaultValue=default, optional=optional)
            param.setUsesStaticStrings(True)
        self.addParameter(param)

    def _labelled(self, name: str) -> Optional[List[str]]:
        return self.__dict__.get("_enum_values", {}).get(name)

    def parameterAsEnumString(self, parameters: Dict[str, Any], name: str,  # noqa: N802
                              context: QgsProcessingContext) -> str:
        """The option value of enum ``name``, for labelled enums too (value, label or index)."""
        values = self._labelled(name)
        if values is None:
            return super().parameterAsEnumString(parameters, name, context)
        raw = parameters.get(name)
        if isinstance(raw, str) and raw in values:
            return raw
        if raw in (None, "") and self.parameterDefinition(name).defaultValue() is None:
            return ""  # an optional choice left unset: the engine's default applies
        index = self.parameterAsEnum(parameters, name, context)
        return values[index] if 0 <= index < len(values) else ""

    def _indexed(self, parameters: Dict[str, Any]) -> Dict[str, Any]:
        """``parameters`` with labelled enums given by value turned into their index."""
        out = dict(parameters)
        for name, values in self.__dict__.get("_enum_values", {}).items():
            if isinstance(out.get(name), str) and out[name] in values:
                out[name] = values.index(out[name])
        return out

    def add_device(self) -> None:
        self.add_enum("DEVICE", "Device", DEVICES, "auto", labels=DEVICE_LABELS)

    def add_format(self) -> None:
        """FORMAT: gtiff or cog, read with :meth:`output_format`."""
        self.add_enum("FORMAT", "Output format", FORMATS, "gtiff", labels=FORMAT_LABELS)

    def output_format(self, parameters: Dict[str, Any], context: QgsProcessingContext) -> str:
        """The FORMAT value ("gtiff" when not set)."""
        return self.parameterAsEnumString(parameters, "FORMAT", context) or "gtiff"

    def add_class_polygons(self, name: str, description: str, ignore_description: str) -> None:
        """Optional polygons ``name`` with their CLASS_FIELD and an optional IGNORE_VALUE."""
        self.addParameter(QgsProcessingParameterFeatureSource(
            name, description, [QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterField(
            "CLASS_FIELD", "Class field", parentLayerParameterName=name, optional=True))
        self.add_int("IGNORE_VALUE", ignore_description, minimum=0, optional=True)

    def add_int(self, name: str, description: str, default: Optional[int] = None,
                minimum: Optional[int] = None, optional: bool = False,
                advanced: bool = False) -> None:
        param = QgsProcessingParameterNumber(name, description,
                                             QgsProcessingParameterNumber.Integer,
                                             defaultValue=default, optional=optional)
        if minimum is not None:
            param.setMinimum(minimum)
        if advanced:
            param.setFlags(param.flags() | param.FlagAdvanced)
        self.addParameter(param)

    def add_tiling(self) -> None:
        """TILE_SIZE, OVERLAP, BATCH_SIZE: empty (or 0 for tile/batch) means the model's default."""
        self.add_int("TILE_SIZE", "Tile size in pixels (empty or 0: the model's)", minimum=0,
                     optional=True, advanced=True)
        self.add_int("OVERLAP", "Tile overlap in pixels (empty: the model's)", minimum=0,
                     optional=True, advanced=True)
        self.add_int("BATCH_SIZE", "Batch size (empty or 0: 8)", minimum=0, optional=True,
                     advanced=True)

    def add_backend(self) -> None:
        """BACKEND (auto | torch | onnx) and PRECISION (fp32 | int8), advanced."""
        for name, description, options, default in (
                ("BACKEND", "Network runtime", BACKENDS, "auto"),
                ("PRECISION", "Precision (int8: a quantised model)", PRECISIONS, "fp32")):
            param = QgsProcessingParameterEnum(name, description, options=options,
                                               defaultValue=default)
            param.setUsesStaticStrings(True)
            param.setFlags(param.flags() | param.FlagAdvanced)
            self.addParameter(param)

    def backend_options(self, parameters: Dict[str, Any],
                        context: QgsProcessingContext) -> Dict[str, str]:
        """``backend`` and ``precision`` keyword arguments for the engine."""
        return {"backend": self.parameterAsEnumString(parameters, "BACKEND", context) or "auto",
                "precision": self.parameterAsEnumString(parameters, "PRECISION", context)
                or "fp32"}

    def add_gsd(self) -> None:
        """GSD (auto | native | metres) and INPUT_GSD: the resolution the model reads at."""
        gsd = QgsProcessingParameterString(
            "GSD", "Read at GSD: auto (the model's, when the image's differs by >25 %), native, "
                   "or metres", defaultValue="auto", optional=True)
        gsd.setFlags(gsd.flags() | gsd.FlagAdvanced)
        self.addParameter(gsd)
        own = QgsProcessingParameterNumber(
            "INPUT_GSD", "Pixel size of an input without georeferencing (m)",
            QgsProcessingParameterNumber.Double, optional=True, minValue=0.0)
        own.setFlags(own.flags() | own.FlagAdvanced)
        self.addParameter(own)

    def add_tta(self) -> None:
        """TTA (none | flips | d4), read with :meth:`tta_option`."""
        param = QgsProcessingParameterEnum("TTA", "Test-time augmentation", options=TTA_MODES,
                                           defaultValue="none", optional=True)
        param.setUsesStaticStrings(True)
        param.setFlags(param.flags() | param.FlagAdvanced)
        self.addParameter(param)

    # ---- reading parameters -------------------------------------------------------------------

    def tta_option(self, parameters: Dict[str, Any], context: QgsProcessingContext) -> Dict[str, str]:
        """``tta`` keyword argument for the engine ("none" when not set)."""
        return {"tta": self.parameterAsEnumString(parameters, "TTA", context) or "none"}

    def gsd_options(self, parameters: Dict[str, Any],
                    context: QgsProcessingContext) -> Dict[str, Any]:
        """``gsd`` and ``input_gsd`` keyword arguments for the engine."""
        gsd = (self.parameterAsString(parameters, "GSD", context) or "auto").strip() or "auto"
        return {"gsd": gsd, "input_gsd": self.optional_float(parameters, "INPUT_GSD", context)}

    def optional_int(self, parameters: Dict[str, Any], name: str,
                     context: QgsProcessingContext, zero_is_unset: bool = False) -> Optional[int]:
        """The integer value of ``name``, or None when it is not set."""
        if parameters.get(name) in (None, ""):
            return None
        value = self.parameterAsInt(parameters, name, context)
        return None if zero_is_unset and value == 0 else value

    def optional_float(self, parameters: Dict[str, Any], name: str,
                       context: QgsProcessingContext) -> Optional[float]:
        """The number ``name``, or None when it is not set (or 0)."""
        if parameters.get(name) in (None, ""):
            return None
        return self.parameterAsDouble(parameters, name, context) or None

    def tiling(self, parameters: Dict[str, Any],
               context: QgsProcessingContext) -> Dict[str, Optional[int]]:
        """``tile``, ``overlap``, ``batch_size`` keyword arguments for the engine."""
        batch = self.optional_int(parameters, "BATCH_SIZE", context, zero_is_unset=True)
        return {"tile": self.optional_int(parameters, "TILE_SIZE", context, zero_is_unset=True),
                "overlap": self.optional_int(parameters, "OVERLAP", context),
                "batch_size": batch or 8}

    def output(self, parameters: Dict[str, Any], name: str,
               context: QgsProcessingContext) -> Optional[str]:
        """The destination path of output ``name``, or None when the output is skipped."""
        return self.parameterAsOutputLayer(parameters, name, context) or None

    def extent_bounds(self, parameters: Dict[str, Any], name: str, layer: str,
                      context: QgsProcessingContext
                      ) -> Optional[Tuple[float, float, float, float]]:
        """Extent parameter ``name`` in the CRS of raster parameter ``layer`` (left, bottom,
        right, top), or None when it is not set."""
        if parameters.get(name) in (None, ""):
            return None
        crs = self.parameterAsRasterLayer(parameters, layer, context).crs()
        extent = self.parameterAsExtent(parameters, name, context, crs)
        if extent.isNull() or extent.isEmpty():
            return None
        return (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum())

    def raster_input(self, parameters: Dict[str, Any], name: str, context: QgsProcessingContext,
                     feedback: Optional[QgsProcessingFeedback],
                     extent: Optional[QgsRectangle] = None,
                     gsd_m: Optional[float] = None) -> Optional[str]:
        """A file the engine can read for raster parameter ``name`` (None when not set)."""
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            if parameters.get(name) not in (None, ""):
                raise QgsProcessingException(f"{name}: cannot open {parameters[name]!r} as a "
                                             f"raster layer")
            return None
        return sources.raster_path(layer, context, feedback, extent, gsd_m)

    def raster_inputs(self, parameters: Dict[str, Any], name: str, context: QgsProcessingContext,
                      feedback: Optional[QgsProcessingFeedback]) -> List[str]:
        """Files for a multiple-raster parameter, in the given order."""
        layers = self.parameterAsLayerList(parameters, name, context)
        return [sources.raster_path(lyr, context, feedback) for lyr in layers
                if isinstance(lyr, QgsRasterLayer)]

    def vector_input(self, parameters: Dict[str, Any], name: str, context: QgsProcessingContext,
                     feedback: Optional[QgsProcessingFeedback]) -> Optional[str]:
        """A single-layer vector file for ``name`` (exported when QGIS-only or multi-layer)."""
        if parameters.get(name) in (None, ""):
            return None
        return self.parameterAsCompatibleSourceLayerPath(
            parameters, name, context, ["gpkg", "shp", "geojson"], "gpkg", feedback)
