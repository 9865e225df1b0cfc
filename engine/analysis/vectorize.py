"""Polygons from a class raster.

``python -m engine vectorize --input CLASSES.tif --output OUT.gpkg [--min-area M2]
[--simplify TOL] [--probabilities PROB.tif] [--model MODEL] [--regularize CLASSES]
[--smooth CLASSES] [--as-is CLASSES] [--tolerance M] [--fill-holes M2] [--block 1024]``

The raster is read in square ``block``×``block`` windows, so memory stays bounded however large
it is.  Each block is polygonised with ``rasterio.features.shapes`` (4-connectivity, pixels that
are nodata/masked are skipped) in *pixel* coordinates, where every vertex is an integer and
merging is exact.  A piece that reaches an internal block edge is "open": it joins a group
(union-find) with the pieces of the same class it shares an edge segment with in the left and
upper neighbour blocks.  Blocks are processed row by row, so once a group has no piece waiting
for its right or lower neighbour it is complete; its pieces are unioned
(``shapely.ops.unary_union``) and written.  The result equals whole-raster polygonisation: the
same polygons, the same areas.  Polygons are then mapped to the raster's CRS with its transform.

Output: a GeoPackage (layer = output file stem) in the raster's CRS; the fields
(class, shape, area, perimeter, mean/min class probability, provenance) are described in
:mod:`engine.analysis.attributes`.  ``area_m2`` is in square metres for projected CRSs, geodesic
square metres on the CRS's ellipsoid for geographic CRSs (:mod:`engine.io.area`), and square
CRS/pixel units when the raster has no CRS.  ``min_area`` (same unit) drops regions by their
exact pixel area.  Outlines follow each class's shape (:mod:`engine.analysis.outlines`):
buildings regularised, natural classes smoothed with borders shared by neighbours, the rest
as-is; ``simplify`` is a Douglas-Peucker tolerance in CRS units for as-is classes, applied per
polygon with topology preservation (neighbours are simplified independently, so their shared
boundaries may no longer match; it is ignored while natural classes are smoothed, whose
neighbours share their borders).
"""
from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
from affine import Affine
from rasterio.features import shapes
from rasterio.windows import Window
from shapely.affinity import affine_transform
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.polygon import orient
from shapely.ops import unary_union

from ..io.area import AreaMeter
from ..io.gpkg import GpkgWriter
from ..io.rasters import bounded_gdal_cache, open_raster
from ..jobs import (CancelledFn, InputError, Job, OutputError, ProgressFn, atomic_output,
                   check_outputs, job_outputs)
from .attributes import (FIELDS, ProbabilityProbe, Stats, merge_stats, probability_fields,
                         provenance)
from .outlines import Outliner, card_shapes, class_names, raster_shapes, resolve_shapes

COMMAND = "vectorize"
HELP = "polygons from a class raster"

DEFAULT_BLOCK = 1024
_INTEGER_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32")
_SHAPES_DTYPES = ("uint8", "uint16", "int16", "int32")


# --------------------------------------------------------------------------------------------
# block-wise polygonisation with exact merging across block edges


@dataclass(eq=False)
class _Piece:
    """A polygon of one block, in pixel coordinates."""

    geom: Polygon
    value: int
    group: int = -1
    stats: Optional[Stats] = None


def _edge_intervals(geojson: Dict[str, Any], axis: int, coord: float) -> List[Tuple[float, float]]:
    """Intervals of the rings' segments that lie on the line ``x == coord`` (axis 0) or
    ``y == coord`` (axis 1); returned as (lo, hi) along the other axis."""
    rings = geojson["coordinates"]
    out: List[Tuple[float, float]] = []
    other = 1 - axis
    for ring in rings:
        pts = np.asarray(ring, dtype=np.float64)
        on = pts[:, axis] == coord
        both = on[:-1] & on[1:]
        if not both.any():
            continue
        a = pts[:-1][both, other]
        b = pts[1:][both, other]
        out.extend(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist()))
    return out


def _ring_without_collinear(coords: Any) -> np.ndarray:
    pts = np.asarray(coords, dtype=np.float64)[:-1, :2]
    prev, nxt = np.roll(pts, 1, axis=0), np.roll(pts, -1, axis=0)
    cross = ((pts[:, 0] - prev[:, 0]) * (nxt[:, 1] - pts[:, 1])
             - (pts[:, 1] - prev[:, 1]) * (nxt[:, 0] - pts[:, 0]))
    keep = pts[cross != 0]
    return keep if len(keep) >= 3 else pts


def _drop_collinear(poly: Polygon) -> Polygon:
    """Remove the vertices a union leaves on former block edges (exact: pixel coordinates are
    integers), including a ring's start point."""
    return Polygon(_ring_without_collinear(poly.exterior.coords),
                   [_ring_without_collinear(r.coords) for r in poly.interiors])


class _BlockMerger:
    """Joins block pieces into whole polygons; ``emit(value, polygon, stats)`` gets each
    complete one (``stats``: its probability statistics, :mod:`engine.analysis.attributes`).

    Groups are keyed by id; a group's ``pending`` counts the (piece, edge) pairs still waiting
    for the neighbour block on the right or below.  Merging moves the smaller group's pieces into
    the larger one.
    """

    def __init__(self, width: int, height: int,
                 emit: Callable[[int, Polygon, Optional[Stats]], None]) -> None:
        self.width, self.height = width, height
        self.emit = emit
        self.groups: Dict[int, Dict[str, Any]] = {}
        self._next = 0
        # (row, col) of a block -> [(piece, intervals on its right / bottom edge)]
        self.right_open: Dict[Tuple[int, int], List[Tuple[_Piece, List[Tuple[float, float]]]]] = {}
        self.bottom_open: Dict[Tuple[int, int], List[Tuple[_Piece, List[Tuple[float, float]]]]] = {}

    # -- groups
    def _new_group(self, piece: _Piece, pending: int) -> None:
        gid = self._next
        self._next += 1
        self.groups[gid] = {"pieces": [piece], "pending": pending}
        piece.group = gid

    def _merge(self, a: int, b: int) -> int:
        if a == b:
            return a
        ga, gb = self.groups[a], self.groups[b]
        if len(ga["pieces"]) < len(gb["pieces"]):
            a, b, ga, gb = b, a, gb, ga
        for p in gb["pieces"]:
            p.group = a
        ga["pieces"].extend(gb["pieces"])
        ga["pending"] += gb["pending"]
        del self.groups[b]
        return a

    def _finish(self, gid: int) -> None:
        group = self.groups.pop(gid)
        pieces = group["pieces"]
        value = pieces[0].value
        stats = merge_stats([p.stats for p in pieces])
        if len(pieces) == 1:
            merged = pieces[0].geom
        else:
            merged = unary_union([p.geom for p in pieces])
        parts = merged.geoms if isinstance(merged, MultiPolygon) else [merged]
        for part in parts:
            if not part.is_empty:
                self.emit(value, _drop_collinear(part) if len(pieces) > 1 else part, stats)

    def open_top(self, values: Collection[int]) -> float:
        """The top pixel row of the still open groups of these class values (inf: none)."""
        return min((p.geom.bounds[1] for g in self.groups.values() for p in g["pieces"]
                    if p.value in values), default=float("inf"))

    # -- linking across one shared edge
    def _link(self, old: List[Tuple[_Piece, List[Tuple[float, float]]]],
              new: List[Tuple[_Piece, List[Tuple[float, float]]]], start: float,
              length: int) -> None:
        """Join pieces of the same class whose intervals on the shared edge overlap.

        Each edge pixel position is owned by at most one piece on each side, so the pairs are
        found with two index arrays over the edge."""
        if not old or not new:
            return
        own_old = np.full(length, -1, dtype=np.int64)
        own_new = np.full(length, -1, dtype=np.int64)
        for arr, items in ((own_old, old), (own_new, new)):
            for i, (_, intervals) in enumerate(items):
                for lo, hi in intervals:
                    arr[int(lo - start):int(hi - start)] = i
        both = (own_old >= 0) & (own_new >= 0)
        if not both.any():
            return
        pairs = np.unique(np.stack([own_old[both], own_new[both]], axis=1), axis=0)
        for i, j in pairs.tolist():
            p, q = old[i][0], new[j][0]
            if p.value == q.value:
                self._merge(p.group, q.group)

    def add_block(self, r: int, c: int, x0: int, y0: int, x1: int, y1: int,
                  polys: List[Tuple[Dict[str, Any], int]],
                  stats: Optional[List[Optional[Stats]]] = None) -> None:
        """Add the pieces of block (r, c) covering pixel columns x0..x1 and rows y0..y1
        (``stats[i]``: the probability statistics of ``polys[i]``)."""
        involved: List[_Piece] = []  # pieces whose group may have become complete
        left_new: List[Tuple[_Piece, List[Tuple[float, float]]]] = []
        top_new: List[Tuple[_Piece, List[Tuple[float, float]]]] = []
        right_new: List[Tuple[_Piece, List[Tuple[float, float]]]] = []
        bottom_new: List[Tuple[_Piece, List[Tuple[float, float]]]] = []
        for i, (geojson, value) in enumerate(polys):
            piece_stats = stats[i] if stats else None
            ring = np.asarray(geojson["coordinates"][0], dtype=np.float64)
            minx, miny = ring.min(axis=0)
            maxx, maxy = ring.max(axis=0)
            left = x0 > 0 and minx == x0
            top = y0 > 0 and miny == y0
            right = x1 < self.width and maxx == x1
            bottom = y1 < self.height and maxy == y1
            geom = shape(geojson)
            if not (left or top or right or bottom):
                self.emit(value, geom, piece_stats)
                continue
            piece = _Piece(geom, value, stats=piece_stats)
            self._new_group(piece, int(right) + int(bottom))
            involved.append(piece)
            for flag, axis, coord, bucket in ((left, 0, x0, left_new), (top, 1, y0, top_new),
                                              (right, 0, x1, right_new),
                                              (bottom, 1, y1, bottom_new)):
                if flag:
                    intervals = _edge_intervals(geojson, axis, coord)
                    if intervals:
                        bucket.append((piece, intervals))
                    elif bucket is right_new or bucket is bottom_new:
                        # touches the edge at a corner only: nothing can join there
                        self.groups[piece.group]["pending"] -= 1
        for key, store, new, start, length in (
                ((r, c - 1), self.right_open, left_new, y0, y1 - y0),
                ((r - 1, c), self.bottom_open, top_new, x0, x1 - x0)):
            old = store.pop(key, [])
            for p, _ in old:  # their neighbour block is here now: no longer pending
                self.groups[p.group]["pending"] -= 1
            self._link(old, new, start, length)
            involved.extend(p for p, _ in old)
        if right_new:
            self.right_open[(r, c)] = right_new
        if bottom_new:
            self.bottom_open[(r, c)] = bottom_new
        # read the groups after all merges: ids may have been merged away meanwhile
        for gid in sorted({p.group for p in involved}):
            if self.groups[gid]["pending"] == 0:
                self._finish(gid)

    def close(self) -> None:
        """Flush what is left (nothing, when every block was added)."""
        for gid in sorted(self.groups):
            self._finish(gid)


def _block_grid(width: int, height: int, block: int) -> List[Tuple[int, int, int, int, int, int]]:
    return [(r, c, x, y, min(x + block, width), min(y + block, height))
            for r, y in enumerate(range(0, height, block))
            for c, x in enumerate(range(0, width, block))]


def iter_polygons(ds: Any, block: int = DEFAULT_BLOCK, job: Optional[Job] = None,
                  probe: Optional[ProbabilityProbe] = None, watch: Collection[int] = (),
                  on_block: Optional[Callable[[float], None]] = None,
                  ) -> Iterator[Tuple[int, Polygon, Optional[Stats]]]:
    """Yield ``(class value, polygon in pixel coordinates, probability statistics)`` for every
    4-connected region of band 1 of ``ds`` (masked/nodata pixels excluded), reading
    ``block``×``block`` windows.  Polygons spanning several blocks come out whole.  The
    statistics come from ``probe`` (None without).  After each block ``on_block(row)`` learns
    the top pixel row that regions still to come of the ``watch`` class values may reach."""
    job = job or Job()
    ready: List[Tuple[int, Polygon, Optional[Stats]]] = []
    merger = _BlockMerger(ds.width, ds.height, lambda v, g, s: ready.append((v, g, s)))
    grid = _block_grid(ds.width, ds.height, block)
    dtype = ds.dtypes[0]
    for i, (r, c, x0, y0, x1, y1) in enumerate(grid):
        job.check()
        win = Window(x0, y0, x1 - x0, y1 - y0)
        data = ds.read(1, window=win)
        valid = ds.read_masks(1, window=win) > 0
        if dtype not in _SHAPES_DTYPES:
            if valid.any() and int(data[valid].max()) > np.iinfo(np.int32).max:
                raise InputError(f"class values above {np.iinfo(np.int32).max} cannot be "
                                 f"polygonised; recode the raster")
            data = data.astype(np.int32)
        polys = [(g, int(v)) for g, v in shapes(data, mask=valid, connectivity=4,
                                                transform=Affine.translation(x0, y0))]
        stats = probe.measure(win, data, valid, polys) if probe is not None else None
        merger.add_block(r, c, x0, y0, x1, y1, polys, stats)
        yield from ready
        ready.clear()
        if on_block is not None:
            on_block(min(float(y0), merger.open_top(watch)))
        job.report((i + 1) / len(grid) * 0.98, f"block {i + 1}/{len(grid)}")
    merger.close()
    yield from ready


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
              fill_holes: Optional[float] = None,
              progress: Optional[ProgressFn] = None,
              cancelled: Optional[CancelledFn] = None) -> Dict[str, Any]:
    """Polygonise a class raster into a GeoPackage; see the module docstring.

    ``values`` keeps only regions of those class values (e.g. the change class).
    ``probabilities``: predict's probability raster of the same run (``prob_mean`` /
    ``prob_min``); ``model``: the model file (class shapes, names and provenance).
    ``regularize`` / ``smooth`` / ``as_is``: comma-separated classes (names or values) whose
    outlines are regularised / smoothed / left as they are, over the card's shapes;
    ``tolerance`` (metres, default two pixels) and ``fill_holes`` (m², default (2 tolerances)²)
    steer them (:mod:`engine.analysis.outlines`).

    Returns ``{"output", "layer", "features", "classes": {class name: polygon count},
    "shapes": {class name: shape}, "dropped_buildings": buildings below a tolerance square}``.
    Raises :class:`InputError` / :class:`OutputError` with a clear message, and
    :class:`~engine.jobs.Cancelled` when ``cancelled()`` turns true (no file is left behind).
    """
    job = Job(progress, cancelled)
    out = Path(output)
    if out.suffix.lower() != ".gpkg":
        raise OutputError(f"output {out.name} must be a GeoPackage file ending in .gpkg")
    if int(block) < 1:
        raise InputError(f"block must be a positive number of pixels (got {block})")
    if min_area < 0 or simplify < 0 or (tolerance or 0) < 0 or (fill_holes or 0) < 0:
        raise InputError("min-area, simplify, tolerance and fill-holes must not be negative")
    check_outputs({"--output": out}, [input, probabilities, model])
    card = None
    if model is not None:
        from ..formats.modelfile import read_card
        card = read_card(model)
    options = _Options(min_area, simplify, values, regularize, smooth, as_is, tolerance,
                       fill_holes, probabilities, model, card)
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
        shapes_of = resolve_shapes(base, names, o.regularize, o.smooth, o.as_is)
        outliner = Outliner(ds, shapes_of, o.tolerance, o.fill_holes, block)
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
        features = 0
        job.report(0.0, "polygonising")
        with atomic_output(out) as tmp:
            writer = GpkgWriter(tmp, out.stem, ds.crs, FIELDS)
            try:
                for value, pixel_geom, stats in iter_polygons(
                        ds, block, job, probe, outliner.building_values, outliner.on_block):
                    if o.values is not None and value not in o.values:
                        continue
                    area = meter.exact(pixel_geom, affine_transform(pixel_geom, matrix),
                                       pixel_area)
                    if area < o.min_area:
                        continue
                    name = names.get(value, str(value))
                    common = {"class_value": int(value), "class_name": name,
                              "shape": outliner.shape_of(value), **probability_fields(stats),
                              **fixed}
                    simplify = 0.0 if outliner.shared(value) or \
                        outliner.shape_of(value) == "building" else o.simplify
                    drawn = outliner.draw(value, pixel_geom)
                    unchanged = drawn == [pixel_geom] and simplify == 0
                    for part in _map_parts(drawn, matrix, simplify):
                        writer.add(orient(part, 1.0), {
                            **common, "area_m2": area if unchanged else meter(part),
                            "perimeter_m": meter.perimeter(part)})
                        counts[name] = counts.get(name, 0) + 1
                        features += 1
                outliner.finish()
                job.check()
                job.report(0.99, "writing")
                writer.finish()
            except BaseException:
                writer.discard()
                raise
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
