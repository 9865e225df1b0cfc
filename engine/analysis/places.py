"""``python -m engine places``: the next places to check, as square polygons.

The dock's review list (:func:`.unsure.unsure_places`) for a script, a batch run or a graphical
model: the least certain places of an uncertainty raster (``predict --uncertainty``), shared
among the kinds of place its image holds (:mod:`.strata`), mixed over the predicted classes,
and never a place already reviewed or corrected.  Each round of the analyst's loop is then
``predict --uncertainty`` → ``places`` → corrections drawn in them → ``refine``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

import numpy as np
from shapely.geometry import box, shape

from ..inference.uncertainty import NODATA
from ..io.corrections import corrections_layer, read_layer, reviewed_places
from ..io.gpkg import GpkgWriter
from ..io.rasters import open_raster, parse_extent
from ..jobs import (CancelledFn, InputError, Job, OptionNames, OutputError, ProgressFn,
                    atomic_output, check_outputs, job_outputs, option_name)
from .unsure import PLACE_PX, PLACES, Bounds, Place, unsure_places

COMMAND = "places"
HELP = "the places to check next: where the model is least sure, over every kind of place"
FIELDS = [("rank", "int"), ("unsure", "real")]


@job_outputs
def review_places(uncertainty: str | Path, image: str | Path,
                  output: Optional[str | Path] = None, prediction: Optional[str | Path] = None,
                  corrections: Optional[str | Path] = None,
                  reviewed: Optional[str | Path] = None, count: int = PLACES,
                  cell_px: int = PLACE_PX, bounds: Optional[Bounds] = None,
                  option_names: OptionNames = None, progress: Optional[ProgressFn] = None,
                  cancelled: Optional[CancelledFn] = None) -> List[Place]:
    """The ``count`` places of ``cell_px`` pixels to check next on ``uncertainty`` (inside
    ``bounds``, in its CRS, when given), most unsure first, written to the GeoPackage
    ``output`` (fields ``rank`` and ``unsure``, 0..1) when given.  ``image``: the raster the
    uncertainty was predicted from (the places are shared among its kinds of place);
    ``prediction``: the class raster of the same run (the list mixes its classes).  Places the
    ``corrections`` cover, and the reviewed places (``reviewed``, else the corrections
    GeoPackage's ``reviewed`` layer), are not listed again.  ``option_names``: how the caller
    names ``output`` in an error sentence (:func:`engine.jobs.option_name`)."""
    job = Job(progress, cancelled)
    label = option_name(option_names, "output")
    if output is not None and Path(output).suffix.lower() != ".gpkg":
        raise OutputError(f"{label} {Path(output).name} must be a GeoPackage file ending in "
                          f".gpkg")
    check_outputs({label: output}, [uncertainty, image, prediction, corrections, reviewed])
    crs = _uncertainty_crs(uncertainty)
    job.report(0.1, "places: what was checked")
    corrected, layer = [], None
    if corrections is not None:
        layer = corrections_layer(corrections)
        corrected = [f.geometry for f in read_layer(corrections, layer, crs)]
    checked = reviewed_places(corrections, layer, reviewed, crs)
    job.check()
    job.report(0.3, "places: ranking")
    places = unsure_places(uncertainty, bounds, count, cell_px,
                           [shape(f.geometry).bounds for f in checked], prediction=prediction,
                           image=image, corrected=corrected)
    if output is not None:
        _write(places, Path(output), crs)
    job.report(1.0, f"places: {len(places)}")
    return places


def _uncertainty_crs(path: str | Path):
    """The CRS of an uncertainty raster; refuses a raster that is not one."""
    with open_raster(path) as ds:
        if ds.count != 1 or np.dtype(ds.dtypes[0]) != np.uint8 or ds.nodata != NODATA:
            raise InputError(f"{Path(path).name} is not an uncertainty raster (one band of "
                             f"0–254, nodata {NODATA}); make one with predict --uncertainty")
        return ds.crs


def _write(places: List[Place], out: Path, crs) -> None:
    with atomic_output(out) as tmp:
        writer = GpkgWriter(tmp, out.stem, crs, FIELDS)
        try:
            for place in places:
                writer.add(box(*place.bounds), {"rank": place.rank,
                                                "unsure": round(place.uncertainty, 4)})
            writer.finish()
        except BaseException:
            writer.discard()
            raise


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``places`` command's options."""
    parser.add_argument("--uncertainty", required=True,
                        help="the model's uncertainty raster (predict --uncertainty)")
    parser.add_argument("--image", required=True,
                        help="the image it was predicted from: the places are shared among "
                             "the kinds of place it holds, also where the model is sure")
    parser.add_argument("--prediction", help="the class raster of the same run: the list "
                                             "mixes its classes")
    parser.add_argument("--corrections", help="the corrections GeoPackage: places its "
                                              "corrections cover or its reviewed layer holds "
                                              "are not listed again")
    parser.add_argument("--reviewed", help="reviewed places in another file (default: the "
                                           "corrections GeoPackage's reviewed layer)")
    parser.add_argument("--count", type=int, default=PLACES,
                        help=f"places to list (default {PLACES})")
    parser.add_argument("--cell", type=int, default=PLACE_PX,
                        help=f"a place's side in pixels of the uncertainty raster (default "
                             f"{PLACE_PX})")
    parser.add_argument("--extent", metavar="LEFT,BOTTOM,RIGHT,TOP",
                        help="only this extent, in the raster's CRS (default: all of it)")
    parser.add_argument("--output", help="the places as square polygons with their rank and "
                                         "uncertainty (GeoPackage, .gpkg)")


def run(args: argparse.Namespace, progress=None) -> None:
    """Run ``places`` and print the list."""
    places = review_places(args.uncertainty, args.image, args.output, args.prediction,
                           args.corrections, args.reviewed, args.count, args.cell, parse_extent(args.extent),
                           progress=progress)
    if not places:
        print("no unsure place left to check here")
    for p in places:
        left, bottom, right, top = p.bounds
        print(f"{p.rank:3d}. {100 * p.uncertainty:3.0f} % unsure  "
              f"{left:.2f} {bottom:.2f} {right:.2f} {top:.2f}")
    if args.output:
        print(f"wrote {args.output} ({len(places)} places)")
