"""Class tables: the value, name and colour of each class that rasters and polygons carry.

Kept apart from the model card so that reading labelled polygons (``io.vectors``) and writing
class rasters never need the model-file wing above them.
"""
from __future__ import annotations

import colorsys
from typing import Any, Dict, List, Optional, Sequence

ISPRS_CLASSES = ["impervious", "building", "low vegetation", "tree", "car", "clutter"]
CHANGE_CLASSES = [{"value": 0, "name": "no change", "color": [0, 0, 0]},
                  {"value": 1, "name": "change", "color": [255, 0, 0]}]
# How vectorize draws a class's polygons (a card class's "shape"): regularised, smoothed, as is
SHAPES = ("building", "natural", "as-is")
_BUILDING_WORDS = ("building", "roof", "house")
_NATURAL_WORDS = ("tree", "forest", "wood", "vegetation", "grass", "meadow", "shrub", "water",
                  "lake", "river", "field", "agricultur", "crop", "farm", "barren", "bare soil")
ISPRS_COLOURS = [(255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0),
                 (255, 0, 0)]


def class_colour(index: int) -> List[int]:
    """A stable, well-separated colour for class ``index`` (golden-ratio hue steps)."""
    h = (index * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.75, 0.95)
    return [round(r * 255), round(g * 255), round(b * 255)]


def default_shape(name: str) -> str:
    """The outline a class of this name gets by default (see :data:`SHAPES`)."""
    low = name.lower()
    if any(w in low for w in _BUILDING_WORDS):
        return "building"
    if any(w in low for w in _NATURAL_WORDS):
        return "natural"
    return "as-is"


def make_classes(names: Sequence[str], values: Optional[Sequence[int]] = None) -> List[Dict[str, Any]]:
    """Card class entries for ``names`` (values default to 1..n; ISPRS names get ISPRS colours)."""
    vals = list(values) if values is not None else list(range(1, len(names) + 1))
    out = []
    for i, (v, n) in enumerate(zip(vals, names)):
        colour = (list(ISPRS_COLOURS[ISPRS_CLASSES.index(n)]) if n in ISPRS_CLASSES
                  else class_colour(i))
        out.append({"value": int(v), "name": str(n), "color": colour})
    return out
