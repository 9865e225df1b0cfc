"""Polygons from a class raster.

``python -m engine vectorize --input CLASSES.tif --output OUT.gpkg [--min-area M2]
[--simplify TOL] [--probabilities PROB.tif] [--model MODEL] [--regularize CLASSES]
[--smooth CLASSES] [--as-is CLASSES] [--tolerance M] [--fill-holes M2] [--block 1024]``

The raster is read in square ``block``×``block`` windows and polygonised in pixel coordinates,
regions across block edges merged exactly (:mod:`engine.analysis.blocks`: the same polygons as
whole-raster polygonisation, memory bounded however large the raster).  Polygons are then mapped
to the raster's CRS with its transform.

Output: a GeoPackage (layer = output file stem) in the raster's CRS; the fields
(class, shape, area, perimeter, mean/min class probability, provenance) are described in
:mod:`engine.analysis.attributes`.  ``area_m2`` is in square metres for projected CRSs, geodesic
square metres on the CRS's ellipsoid for geographic CRSs (:mod:`engine.io.area`), and square
CRS/pixel units when the raster has no CRS.  ``min_area`` (same unit) drops regions by their
exact pixel area.  Outlines follow each class's shape (:mod:`engine.analysis.outlines`):
buildings regularised, natural classes smoothed with borders shared by neighbours, the rest
as-is, and the polygons around a building bordered by its drawn outline; ``simplify`` is a Douglas-Peucker tolerance in CRS units for as-is classes, applied per
polygon with topology preservation (neighbours are simplified independently, so their shared
boundaries may no longer match; it is ignored while natural classes are smoothed, whose
neighbours share their borders).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Dict, Iterator, List, Optional

from shapely.affinity import affine_transform
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.polygon import orient

from ..io.area import AreaMeter
from ..io.gpkg import GpkgWriter
from ..io.rasters import bounded_gdal_cache, open_raster
from ..jobs import (CancelledFn, InputError, Job, OptionNames, OutputError, ProgressFn,
                   atomic_output, check_outputs, job_outputs, option_name)
from .attributes import FIELDS, ProbabilityProbe, probability_fields, provenance
from .blocks import DEFAULT_BLOCK, iter_polygons
from .outlines import (Drawn, Outliner, card_shapes, check_not_negative, class_names,
                       raster_shapes, resolve_shapes)

COMMAND = "vectorize"
HELP = "polygons from a class raster"

_INTEGER_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32")


# --------------------------------------------------------------------------------------------
# entry point


def _open_class_raster(path: str | Path) -> Any:
    ds = open_raster(path)
    if ds.count != 1:
        n = ds.count
        ds.close()
        raise InputError(f"{Path(path).name} has {n} bands; vectorize needs a single-band class "
                         f"raster (e.g. the output of predict)")
    if ds.dtypes[0] not in _INTEGER_DTYPES:
        dt = ds.dtypes[0]
        ds.close()
        raise InputError(f"{Path(path).name} has data type {dt}; vectorize needs a class raster "
                         f"of integer class values")
    return ds


@job_outputs
def vectorize(input: str | Path, output: str | Path, min_area: float = 0.0,
              simplify: float = 0.0, block: int = DEFAULT_BLOCK,
              values: Optional[Collection[int]] = None,
              probabilities: Optional[str | Path] = None, model: Optional[str | Path] = None,
              regularize: Optional[str] = None, smooth: Optional[str] = None,
              as_is: Optional[str] = None, tolerance: Optional[float] = None,
              fill_holes: Optional[float] = None, option_names: OptionNames = None,
              progress: Optional[ProgressFn] = None,
              cancelled: Optional[CancelledFn] = None) -> Dict[str, Any]:
    """Polygonise a class raster into a GeoPackage; see the module docstring.

    ``values`` keeps only regions of those class values (e.g. the change class).
    ``probabilities``: predict's probability raster of the same run (``prob_mean`` /
    ``prob_min``); ``model``: the model file (class shapes, names and provenance).
    ``regularize`` / ``smooth`` / ``as_is``: comma-separated classes (names or values) whose
    outlines are regularised / smoothed / left as they are, over the card's shapes;
    ``tolerance`` (metres, default two pixels) and ``fill_holes`` (m², default (2 tolerances)²)
    steer them (:mod:`engine.analysis.outlines`).  ``option_names``: how the calling
    front-end names these parameters in error sentences (keyword → label, e.g. a Processing
    form's; default the command-line options, :func:`engine.jobs.option_name`).

    Returns ``{"output", "layer", "features", "classes": {class name: polygon count},
    "shapes": {class name: shape}, "dropped_buildings": buildings below a tolerance square}``.
    Raises :class:`InputError` / :class:`OutputError` with a clear message, and
    :class:`~engine.jobs.Cancelled` when ``cancelled()`` turns true (no file is left behind).
    """
    job = Job(progress, cancelled)
    out = Path(output)
    label = functools.partial(option_name, option_names)
    if out.suffix.lower() != ".gpkg":
        raise OutputError(f"{label('output')} {out.name} must be a GeoPackage file ending in "
                          f".gpkg")
    if int(block) < 1:
        raise InputError(f"{label('block')} must be a positive number of pixels (got {block})")
    check_not_negative(option_names, min_area=min_area, simplify=simplify, tolerance=tolerance,
                       fill_holes=fill_holes)
    check_outputs({label("output"): out}, [input, probabilities, model])
    card = None
    if model is not None:
        from ..formats.modelfile import read_card
        card = read_card(model)
    options = _Options(min_area, simplify, values, regularize, smooth, as_is, tolerance,
                       fill_holes, probabilities, model, card, option_names)
    with bounded_gdal_cache():
        return _vectorize(input, out, options, int(block), job)


@dataclass
class _Options:
    min_area: float
    simplify: float
    values: Optional[Collection[int]]
    regularize: Optional[str]
    smooth: Optional[str]
    as_is: Optional[str]
    tolerance: Optional[float]
    fill_holes: Optional[float]
    probabilities: Optional[str | Path]
    model: Optional[str | Path]
    card: Optional[Dict[str, Any]]
    option_names: OptionNames


def _vectorize(input: str | Path, out: Path, o: _Options, block: int,
               job: Job) -> Dict[str, Any]:
    ds = _open_class_raster(input)
    with contextlib.ExitStack() as stack:
        stack.callback(ds.close)
        names = class_names(ds)
        base = raster_shapes(ds)
        if o.card is not None:
            names = {**names, **{int(c["value"]): str(c["name"]) for c in o.card["classes"]}}
            base = card_shapes(o.card["classes"])
        shapes_of = resolve_shapes(base, names, o.regularize, o.smooth, o.as_is,
                                   o.option_names)
        outliner = Outliner(ds, shapes_of, o.tolerance, o.fill_holes, block, o.option_names)
        probe = ProbabilityProbe(o.probabilities, ds) if o.probabilities else None
        if probe is not None:
            stack.callback(probe.close)
        fixed = provenance(input, o.card["name"] if o.card else None, o.model)
        transform = ds.transform
        matrix = [transform.a, transform.b, transform.d, transform.e, transform.xoff,
                  transform.yoff]
        pixel_area = abs(transform.determinant)
        meter = AreaMeter(ds.crs)
        counts: Dict[str, int] = {}

        def write(drawn: List[Drawn]) -> None:
            for value, pixel_geom, (area, stats), parts in drawn:
                name = names.get(value, str(value))
                common = {"class_value": int(value), "class_name": name,
                          "shape": outliner.shape_of(value), **probability_fields(stats), **fixed}
                simplify = 0.0 if outliner.shared(value) or \
                    outliner.shape_of(value) == "building" else o.simplify
                unchanged = parts == [pixel_geom] and simplify == 0
                for part in _map_parts(parts, matrix, simplify):
                    writer.add(orient(part, 1.0), {
                        **common, "area_m2": area if unchanged else meter(part),
                        "perimeter_m": meter.perimeter(part)})
                    counts[name] = counts.get(name, 0) + 1

        job.report(0.0, "polygonising")
        with atomic_output(out) as tmp:
            writer = GpkgWriter(tmp, out.stem, ds.crs, FIELDS)
            try:
                for value, pixel_geom, stats in iter_polygons(ds, block, job, probe,
                                                              outliner.on_block):
                    if o.values is not None and value not in o.values:
                        continue
                    area = meter.exact(pixel_geom, affine_transform(pixel_geom, matrix),
                                       pixel_area)
                    if area >= o.min_area:
                        outliner.add(value, pixel_geom, (area, stats))
                        write(outliner.take())
                write(outliner.finish())
                job.check()
                job.report(0.99, "writing")
                writer.finish()
            except BaseException:
                writer.discard()
                raise
    features = sum(counts.values())
    job.report(1.0, f"{features} polygons")
    return {"output": str(out), "layer": out.stem, "features": features, "classes": counts,
            "shapes": {names.get(v, str(v)): s for v, s in sorted(shapes_of.items())},
            "dropped_buildings": outliner.dropped}


def _map_parts(parts: List[Polygon], matrix: List[float], simplify: float) -> Iterator[Polygon]:
    """Pixel polygons in map coordinates, simplified (as-is classes) and split into parts."""
    for part in parts:
        geom = affine_transform(part, matrix)
        if simplify > 0:
            geom = geom.simplify(simplify, preserve_topology=True)
        if not geom.is_valid:  # vertices a hair apart in pixels can meet in map coordinates
            geom = geom.buffer(0)
        for piece in (geom.geoms if isinstance(geom, MultiPolygon) else [geom]):
            if not piece.is_empty:
                yield piece


# --------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``vectorize`` command's options."""
    parser.add_argument("--input", required=True, help="class raster (single band, integer)")
    parser.add_argument("--output", required=True, help="output GeoPackage (.gpkg)")
    parser.add_argument("--min-area", type=float, default=0.0, dest="min_area",
                        help="drop polygons smaller than this many m² (default 0)")
    parser.add_argument("--simplify", type=float, default=0.0,
                        help="topology-preserving simplification tolerance in CRS units for "
                             "as-is classes (default 0: exact pixel outlines)")
    parser.add_argument("--probabilities",
                        help="predict's --probabilities raster of the same run: adds each "
                             "polygon's mean and minimum class probability (prob_mean, prob_min)")
    parser.add_argument("--model", help="the model file that made the raster: class shapes "
                                        "and names from its card, its name and SHA-256 on "
                                        "every polygon")
    parser.add_argument("--regularize", metavar="CLASSES",
                        help="regularise these classes as buildings (comma-separated names or "
                             "values; default: the card's building classes)")
    parser.add_argument("--smooth", metavar="CLASSES",
                        help="smooth these classes as natural shapes, borders shared with "
                             "neighbours (default: the card's natural classes)")
    parser.add_argument("--as-is", metavar="CLASSES", dest="as_is",
                        help="leave these classes' pixel outlines as they are ('all': ignore "
                             "the card's shapes)")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="regularisation / smoothing tolerance in metres (default two "
                             "pixels; at least one pixel, below half a building's width)")
    parser.add_argument("--fill-holes", type=float, default=None, dest="fill_holes",
                        help="fill holes in buildings smaller than this many m² (default "
                             "(2 × tolerance)²)")
    parser.add_argument("--block", type=int, default=DEFAULT_BLOCK,
                        help=f"block edge in pixels read at a time (default {DEFAULT_BLOCK})")


def run(args: argparse.Namespace, progress=None) -> None:
    """Run ``vectorize`` from parsed arguments and print a summary."""
    result = vectorize(args.input, args.output, min_area=args.min_area,
                       simplify=args.simplify, block=args.block,
                       probabilities=args.probabilities, model=args.model,
                       regularize=args.regularize, smooth=args.smooth, as_is=args.as_is,
                       tolerance=args.tolerance, fill_holes=args.fill_holes, progress=progress)
    print(f"wrote {result['output']} (layer {result['layer']}): {result['features']} polygons")
    if result["dropped_buildings"]:
        print(f"  {result['dropped_buildings']} buildings smaller than a tolerance square left out")
    for name, count in sorted(result["classes"].items()):
        shape = result["shapes"].get(name, "as-is")
        print(f"  {name:20s} {count:8d}  {shape}")
