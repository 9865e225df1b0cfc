"""The model overrides every inference algorithm takes (the CLI's ``--classes``,
``--input-scale``, ``--mean``, ``--std``, ``--threshold``, ``--small-segment``,
``--output-index``), and one layer per model output.

Parameters are read here; the engine applies them (:func:`engine.formats.overrides.load_defined`,
on top of the model definition beside the model file).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from qgis.core import (QgsProcessingContext, QgsProcessingException, QgsProcessingParameterNumber,
                       QgsProcessingParameterString)

from .base import EngineRun, RsSegAlgorithm

HELP = ("CLASSES / INPUT_SCALE / MEAN / STD / THRESHOLD / SMALL_SEGMENT / OUTPUT_INDEX",
        "override what the model (or the definition beside it, MODEL.onnx.json) says: class "
        "names; the pixel value read as 1.0 (1 for 0–1 reflectance, 10000 for Sentinel-2 L2A); "
        "per-band mean/std after that scale; the class probability threshold and small-segment "
        "median filter as Deepness applies them; which output of a several-output model to "
        "write (empty: each output becomes its own layer)")


def add_model_options(alg: RsSegAlgorithm, threshold: bool = True) -> None:
    """Advanced parameters overriding the model's own description."""
    def advanced(param: Any) -> None:
        param.setFlags(param.flags() | param.FlagAdvanced)
        alg.addParameter(param)

    advanced(QgsProcessingParameterString("CLASSES", "Class names (comma-separated; empty: the "
                                                     "model's)", optional=True))
    advanced(QgsProcessingParameterNumber("INPUT_SCALE", "Pixel value the model reads as 1.0 "
                                                         "(empty: the model's)",
                                          QgsProcessingParameterNumber.Double, optional=True,
                                          minValue=0.0))
    advanced(QgsProcessingParameterString("MEAN", "Per-band mean after the input scale "
                                                  "(comma-separated)", optional=True))
    advanced(QgsProcessingParameterString("STD", "Per-band std after the input scale "
                                                 "(comma-separated)", optional=True))
    if threshold:
        advanced(QgsProcessingParameterNumber("THRESHOLD", "Class probability threshold (empty: "
                                                           "the model's)",
                                              QgsProcessingParameterNumber.Double, optional=True,
                                              minValue=0.0, maxValue=1.0))
        advanced(QgsProcessingParameterNumber("SMALL_SEGMENT", "Remove small segments: median "
                                                               "filter size in pixels (empty: "
                                                               "the model's; 0: off)",
                                              QgsProcessingParameterNumber.Integer,
                                              optional=True, minValue=0))
    advanced(QgsProcessingParameterNumber("OUTPUT_INDEX", "Model output to write (empty: every "
                                                          "output, one layer each)",
                                          QgsProcessingParameterNumber.Integer, optional=True,
                                          minValue=0))


def comma_numbers(text: Optional[str], kind: Callable[[str], Any], problem: str
                  ) -> Optional[List[Any]]:
    """'1,2,3' → numbers of ``kind``; empty → None; else :class:`QgsProcessingException`
    saying ``problem``."""
    if not text or not text.strip():
        return None
    try:
        return [kind(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise QgsProcessingException(f"{problem} (got {text!r})") from None


def _numbers(alg: RsSegAlgorithm, parameters: Dict[str, Any], name: str,
             context: QgsProcessingContext) -> Optional[List[float]]:
    text = alg.parameterAsString(parameters, name, context) if name in parameters else ""
    return comma_numbers(text, float, f"{name} must be comma-separated numbers such as "
                                      f"0.485,0.456,0.406")


def model_overrides(alg: RsSegAlgorithm, parameters: Dict[str, Any],
                    context: QgsProcessingContext) -> Dict[str, Any]:
    """The overrides set in ``parameters`` (keyword values for the engine's definition)."""
    classes = alg.parameterAsString(parameters, "CLASSES", context) if "CLASSES" in parameters \
        else ""
    return {"classes": [c.strip() for c in classes.split(",")] if classes.strip() else None,
            "input_scale": alg.optional_float(parameters, "INPUT_SCALE", context),
            "mean": _numbers(alg, parameters, "MEAN", context),
            "std": _numbers(alg, parameters, "STD", context),
            "threshold": (alg.parameterAsDouble(parameters, "THRESHOLD", context)
                          if parameters.get("THRESHOLD") not in (None, "") else None),
            "small_segment": alg.optional_int(parameters, "SMALL_SEGMENT", context),
            "output": alg.optional_int(parameters, "OUTPUT_INDEX", context)}


def load_model(alg: RsSegAlgorithm, run: EngineRun, model: str, device: str,
               parameters: Dict[str, Any], context: QgsProcessingContext,
               **fixed: Any) -> Any:
    """The model with its definition and the algorithm's overrides (``fixed`` wins)."""
    from engine.formats.overrides import definition_of, load_defined
    values = {**model_overrides(alg, parameters, context), **fixed}
    overrides = run.call(definition_of, job=False, **values)
    return run.call(load_defined, model, device, overrides, job=False)


def other_outputs(model: Any, output: str, chosen: Optional[int]) -> List[Tuple[int, str, str]]:
    """(index, layer name, file) of the outputs written beside ``output`` when the model has
    several and none was chosen: ``NAME_<layer>.tif`` next to it."""
    from engine.formats.outputs import each_output, output_names
    names = output_names(model)
    if chosen is not None or len(names) < 2:
        return []
    p = Path(output)
    pattern = str(p.with_name(f"{p.stem}_{{output}}{p.suffix}"))
    return [entry for entry in each_output(pattern, names) if entry[0] != 0]


def layer_name(card: Dict[str, Any]) -> str:
    """A class raster's layer name: its classes."""
    return ", ".join(c["name"] for c in card["classes"])
