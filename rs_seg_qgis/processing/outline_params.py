"""The outline parameters shared by Vectorize and Segment: which classes are regularised or
smoothed (over the model card's class shapes) and with what tolerance."""
from __future__ import annotations

import re
from typing import Any, Dict

from qgis.core import (QgsProcessingAlgorithm, QgsProcessingContext,
                       QgsProcessingParameterNumber, QgsProcessingParameterString)

OUTLINE_HELP = [
    ("REGULARIZE", "classes regularised as buildings (comma-separated names or values; empty: "
                   "the model card's building classes): right angles, parallel sides, no "
                   "notches, neighbours share walls and never overlap"),
    ("SMOOTH", "classes smoothed as natural shapes (empty: the card's natural classes); "
               "neighbours keep a shared border, no gaps or overlaps"),
    ("AS_IS", "classes left as pixel outlines ('all': ignore the card's shapes)"),
    ("TOLERANCE", "regularisation / smoothing tolerance in metres (empty: two pixels); at "
                  "least one pixel, below half a building's width"),
    ("FILL_HOLES", "holes in buildings smaller than this many m² are filled (empty: "
                   "(2 × tolerance)²)")]

# the engine's keyword arguments (vectorize) and the parameters that set them
ENGINE_KEYWORDS = {"regularize": "REGULARIZE", "smooth": "SMOOTH", "as_is": "AS_IS",
                   "tolerance": "TOLERANCE", "fill_holes": "FILL_HOLES", "min_area": "MIN_AREA",
                   "simplify": "SIMPLIFY"}


def add_outline_parameters(alg: QgsProcessingAlgorithm, advanced: bool = False) -> None:
    """REGULARIZE, SMOOTH, AS_IS, TOLERANCE and FILL_HOLES (see :data:`OUTLINE_HELP`)."""
    params = [
        QgsProcessingParameterString("REGULARIZE", "Regularise as buildings (classes)",
                                     optional=True),
        QgsProcessingParameterString("SMOOTH", "Smooth as natural shapes (classes)",
                                     optional=True),
        QgsProcessingParameterString("AS_IS", "Keep pixel outlines (classes, or all)",
                                     optional=True),
        QgsProcessingParameterNumber("TOLERANCE", "Outline tolerance (m; empty: two pixels)",
                                     QgsProcessingParameterNumber.Double, optional=True,
                                     minValue=0.0),
        QgsProcessingParameterNumber("FILL_HOLES", "Fill building holes below (m²)",
                                     QgsProcessingParameterNumber.Double, optional=True,
                                     minValue=0.0)]
    for param in params:
        if advanced:
            param.setFlags(param.flags() | param.FlagAdvanced)
        alg.addParameter(param)


def option_names(alg: QgsProcessingAlgorithm, output: str) -> Dict[str, str]:
    """The labels the form shows for the parameters the engine may name in an error sentence
    (without a trailing note in brackets: "Outline tolerance"), by engine keyword; ``output``
    is the polygons' parameter."""
    names = {}
    for keyword, name in {**ENGINE_KEYWORDS, "output": output}.items():
        definition = alg.parameterDefinition(name)
        if definition is not None:
            names[keyword] = re.sub(r"\s*\([^()]*\)$", "", definition.description())
    return names


def outline_options(alg: Any, parameters: Dict[str, Any], context: QgsProcessingContext,
                    output: str = "OUTPUT") -> Dict[str, Any]:
    """The engine's ``regularize``/``smooth``/``as_is``/``tolerance``/``fill_holes``, and
    ``option_names`` (:func:`option_names`; ``output``: the polygons' parameter)."""
    def text(name: str) -> Any:
        return (alg.parameterAsString(parameters, name, context) or "").strip() or None

    fill = None
    if parameters.get("FILL_HOLES") not in (None, ""):
        fill = alg.parameterAsDouble(parameters, "FILL_HOLES", context)
    return {"regularize": text("REGULARIZE"), "smooth": text("SMOOTH"), "as_is": text("AS_IS"),
            "tolerance": alg.optional_float(parameters, "TOLERANCE", context),
            "fill_holes": fill, "option_names": option_names(alg, output)}
