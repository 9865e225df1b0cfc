"""Which classes get which outline, and drawing it: regularised, smoothed or as-is.

Each class has a ``shape``: ``building`` (regularised: :mod:`engine.analysis.regularize`),
``natural`` (smoothed with shared borders: :mod:`engine.analysis.smooth`) or ``as-is`` (the
pixel outline, optionally Douglas-Peucker simplified).  The shapes come from the model card's
classes (``"shape"``, written into the class raster's ``RS_SEG_CLASSES`` tag by predict, or read
from ``--model``); overrides name classes by name or value: ``regularize`` makes them buildings,
``smooth`` natural, ``as_is`` as-is (``all`` for every class).

The tolerance (metres) drives both: default twice the pixel size; one the user gives must be at
least the pixel size and below half the typical building width.

With buildings regularised, every other region (natural or as-is) takes the drawn buildings as
its border (:mod:`engine.analysis.borders`): no gap and no overlap between a building and the
polygons around it.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import rasterio
from shapely.geometry import Polygon

from ..io.classes import SHAPES
from ..io.gsd import raster_gsd
from ..jobs import InputError, OptionNames, option_name
from .blocks import Frontier
from .borders import BuildingBorders
from .regularize import Buildings, check_tolerance
from .smooth import CoverageSmoother, LabelSampler, smooth_classes

DEFAULT_TOLERANCE_PX = 2.0
DEFAULT_FILL_HOLES_TOL2 = 4.0  # holes below (2 tolerances)² are filled by default


def card_shapes(classes: Sequence[Mapping[str, Any]]) -> Dict[int, str]:
    """``{class value: shape}`` of card class entries that name a shape."""
    return {int(c["value"]): str(c["shape"]) for c in classes if c.get("shape") in SHAPES}


def class_names(ds: Any) -> Dict[int, str]:
    """Class names by value from band 1's ``CLASS_<v>`` tags (or the ``RS_SEG_CLASSES`` JSON)."""
    tags = ds.tags(1)
    names: Dict[int, str] = {}
    with contextlib.suppress(ValueError, TypeError, KeyError):
        for c in json.loads(tags.get("RS_SEG_CLASSES", "[]")):
            names[int(c["value"])] = str(c["name"])
    for key, name in tags.items():
        if key.startswith("CLASS_"):
            with contextlib.suppress(ValueError):
                names[int(key[len("CLASS_"):])] = name
    return names


def raster_shapes(ds: Any) -> Dict[int, str]:
    """Shapes carried by a class raster's ``RS_SEG_CLASSES`` tag (empty when none)."""
    with contextlib.suppress(KeyError, ValueError, TypeError):
        return card_shapes(json.loads(ds.tags(1)["RS_SEG_CLASSES"]))
    return {}


def _class_values(names: Mapping[int, str], wanted: str, option: str) -> List[int]:
    by_name = {n.lower(): v for v, n in names.items()}
    out = []
    for item in (w.strip() for w in wanted.split(",")):
        if not item:
            continue
        if item.lower() in by_name:
            out.append(by_name[item.lower()])
        elif item.lstrip("-").isdigit() and (int(item) in names or not names):
            out.append(int(item))  # an untagged raster's classes are known by value only
        else:
            listed = ", ".join(f"{v} {n}" if str(v) != n else n for v, n in sorted(names.items()))
            raise InputError(f"{option}: the raster has no class {item!r}; its classes are "
                             f"{listed or 'not named (give class values)'}")
    return out


def resolve_shapes(base: Mapping[int, str], names: Mapping[int, str],
                   regularize: Optional[str] = None, smooth: Optional[str] = None,
                   as_is: Optional[str] = None,
                   option_names: OptionNames = None) -> Dict[int, str]:
    """The shape of each class: ``base`` (card / raster tags) with the overrides applied.
    ``names`` (value → name) are the classes the raster has; ``option_names`` how the caller
    names the overrides in error sentences (:func:`engine.jobs.option_name`)."""
    shapes = dict(base)
    if as_is and as_is.strip().lower() == "all":
        shapes = {}
    elif as_is:
        for v in _class_values(names, as_is, option_name(option_names, "as_is")):
            shapes.pop(v, None)
    for keyword, wanted, shape in (("regularize", regularize, "building"),
                                   ("smooth", smooth, "natural")):
        if wanted:
            option = option_name(option_names, keyword)
            shapes.update({v: shape for v in _class_values(names, wanted, option)})
    return {v: s for v, s in shapes.items() if s != "as-is"}


def check_not_negative(option_names: OptionNames, **values: Optional[float]) -> None:
    """A sentence naming the first of ``values`` (engine keyword → value) below zero."""
    for keyword, value in values.items():
        if (value or 0) < 0:
            raise InputError(f"{option_name(option_names, keyword)} must not be negative "
                             f"(got {value:g})")


def check_outline_options(classes: Sequence[Mapping[str, Any]], raster: str | Path,
                          regularize: Optional[str] = None, smooth: Optional[str] = None,
                          as_is: Optional[str] = None, tolerance: Optional[float] = None,
                          fill_holes: Optional[float] = None,
                          option_names: OptionNames = None) -> Dict[int, str]:
    """The checks of the outline options that need no class pixels, against a model card's
    ``classes`` and the pixel size of ``raster`` (the image whose grid the classes will take):
    a caller that predicts before it vectorises runs them first, so a mistyped class or
    tolerance fails before the prediction, with the sentence vectorize would give.  Returns the
    shape each class will get."""
    check_not_negative(option_names, tolerance=tolerance, fill_holes=fill_holes)
    names = {int(c["value"]): str(c["name"]) for c in classes}
    shapes = resolve_shapes(card_shapes(classes), names, regularize, smooth, as_is,
                            option_names)
    if shapes and tolerance is not None:
        with rasterio.open(raster) as ds:
            pixel_m = pixel_metres(ds)
        check_tolerance(tolerance, pixel_m, option_name(option_names, "tolerance"))
    return shapes


def pixel_metres(ds: Any) -> float:
    """Pixel size in metres (CRS units without a CRS)."""
    gsd = raster_gsd(ds)
    return float(gsd) if gsd else float(abs(ds.transform.a)) or 1.0


# a region waiting to be drawn (class value, pixel polygon, the caller's payload), and drawn
Region = Tuple[int, Polygon, Any]
Drawn = Tuple[int, Polygon, Any, List[Polygon]]


class Outliner:
    """Draws each region's outline by its class's shape, in pixel coordinates.

    Regions go in with :meth:`add` and come out drawn from :meth:`take` (and :meth:`finish`).
    With buildings regularised, every other region takes the drawn buildings as its border
    (:mod:`engine.analysis.borders`), so it waits until the blocks have passed the last building
    that could border it (:meth:`on_block`); the buildings and their leftovers are kept while a
    region that may border them is still to come (a region spanning the scene keeps them all)."""

    def __init__(self, ds: Any, shapes: Mapping[int, str], tolerance_m: Optional[float],
                 fill_holes_m2: Optional[float], block: int,
                 option_names: OptionNames = None) -> None:
        self.shapes = dict(shapes)
        self.pixel_m = pixel_metres(ds)
        tol_m = tolerance_m or DEFAULT_TOLERANCE_PX * self.pixel_m
        option = option_name(option_names, "tolerance")
        if self.shapes:
            check_tolerance(tol_m, self.pixel_m, option)
        self.tol = tol_m / self.pixel_m
        fill = fill_holes_m2 if fill_holes_m2 is not None else \
            DEFAULT_FILL_HOLES_TOL2 * tol_m * tol_m
        sampler = LabelSampler(ds, block)
        self.buildings, self.borders = None, None
        if "building" in self.shapes.values():
            self.buildings = Buildings(self.tol, fill / self.pixel_m ** 2, self.pixel_m,
                                       check=tolerance_m is not None,
                                       frame=(ds.width, ds.height), option=option)
            self.borders = BuildingBorders(sampler, self.building_values)
        self.smoother = CoverageSmoother(sampler, self.shapes, self.tol) \
            if smooth_classes(self.shapes) else None
        self.waiting: List[Region] = []
        self.done: List[Drawn] = []

    @property
    def building_values(self) -> List[int]:
        return [v for v, s in self.shapes.items() if s == "building"]

    def shape_of(self, value: int) -> str:
        return self.shapes.get(value, "as-is")

    def add(self, value: int, poly: Polygon, payload: Any = None) -> None:
        """A region to draw (``payload`` comes back with it from :meth:`take`)."""
        if self.buildings is not None and self.borders is not None:
            if self.shape_of(value) == "building":
                parts = list(self.buildings.add(poly))
                self.borders.add(poly, self.buildings.near(poly.bounds))
                self.done.append((value, poly, payload, parts))
            else:
                self.waiting.append((value, poly, payload))
            return
        self.done.append((value, poly, payload, self._drawn(value, poly)))

    def _drawn(self, value: int, poly: Polygon) -> List[Polygon]:
        """A region that is not a building: smoothed (when any class is), then bordered by the
        drawn buildings (when there are any)."""
        drawn = self.smoother.polygon(poly, value) if self.smoother is not None else [poly]
        if self.buildings is None or self.borders is None:
            return drawn
        return self.borders.fit(value, poly, drawn, self.buildings.near(poly.bounds))

    def take(self) -> List[Drawn]:
        """The regions drawn so far: (class value, pixel polygon, payload, outline parts); a
        building too small for the tolerance has no parts."""
        done, self.done = self.done, []
        return done

    def shared(self, value: int) -> bool:
        """Whether the outline of this class shares its borders with neighbours (then it must
        not be simplified on its own)."""
        return self.smoother is not None and self.shape_of(value) != "building"

    @property
    def dropped(self) -> int:
        """Buildings too small for the tolerance (see :mod:`engine.analysis.regularize`)."""
        return self.buildings.dropped if self.buildings is not None else 0

    def on_block(self, frontier: Frontier) -> None:
        """After a block: ``frontier(of)`` is the top pixel row that regions still to come of
        the classes ``of`` picks may reach (:func:`engine.analysis.blocks.iter_polygons`)."""
        if self.buildings is None or self.borders is None:
            return
        building = set(self.building_values)
        built = frontier(lambda v: v in building)
        waiting = []
        for value, poly, payload in self.waiting:
            if poly.bounds[3] < built:  # no building still to come touches it
                self.done.append((value, poly, payload, self._drawn(value, poly)))
            else:
                waiting.append((value, poly, payload))
        self.waiting = waiting
        top = min([built, frontier(lambda v: v not in building)] +
                  [poly.bounds[1] for _, poly, _ in waiting])
        self.buildings.forget_above(top)
        self.borders.forget_above(top)

    def finish(self) -> List[Drawn]:
        """The regions still waiting, drawn; then the checks that need every building (the
        tolerance against their size)."""
        for value, poly, payload in self.waiting:
            self.done.append((value, poly, payload, self._drawn(value, poly)))
        self.waiting = []
        if self.buildings is not None:
            self.buildings.finish()
        return self.take()
