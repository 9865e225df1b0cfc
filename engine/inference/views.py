"""How the network sees an input raster: GSD plan, window reader, normalisation, grid.

Predict, change detection and click-to-segment all build their inputs here, so the resolution
and radiometry rules (``--gsd``, ``--input-gsd``, the card's normalisation mode, histogram
matching) hold the same everywhere.  The grid and the stitcher stay on the input raster; a
resampled view only changes what one window of it looks like to the network.  Where the caller
allows it (``ViewOptions.model_grid``, predict), an input finer than the model is blended on the
model's grid instead and only the output values come to the input grid (:mod:`engine.io.resample`).
"""
from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import rasterio

from ..io.gsd import GsdPlan, plan_gsd
from ..io.radiometry import BandStats, effective_affine, image_statistics, needs_statistics
from ..io.rasters import WindowReader, open_raster
from ..io.resample import (ModelGridReader, ResampledWindowReader, RowsFn, input_tiling,
                           model_grid_size, rows_to_input_grid, scores_to_input_grid)
from ..jobs import InputError
from .tiling import Grid, check_tiling


@dataclass(frozen=True)
class ViewOptions:
    """The user's choices on resolution and radiometry (CLI / Processing / GUI)."""

    gsd: str = "auto"
    input_gsd: Optional[float] = None
    match_histograms: bool = False
    model_grid: bool = False  # blend an input finer than the model at the model's GSD


@dataclass
class View:
    """The window geometry the network runs at, for one input grid."""

    plan: GsdPlan
    tile: int  # network window edge
    overlap: int
    grid_tile: int  # window edge in input pixels
    grid_overlap: int
    model_grid: bool = False  # grid and stitcher at the model's GSD (an input finer than it)

    def grid(self, width: int, height: int) -> Grid:
        """The sliding-window grid over a ``width``×``height`` input."""
        if self.model_grid:
            return Grid(*model_grid_size(width, height, self.plan.scale), self.tile, self.overlap)
        return Grid(width, height, self.grid_tile, self.grid_overlap)

    def reader(self, ds: rasterio.io.DatasetReader, bands: Sequence[int]) -> WindowReader:
        """A reader delivering network-sized windows of ``ds``."""
        if self.model_grid:
            return ModelGridReader(ds, bands, self.tile, self.plan.scale)
        if self.plan.resampled:
            return ResampledWindowReader(ds, bands, self.tile)
        return WindowReader(ds, bands)

    def wrap(self, forward: Callable[[Dict[str, Any]], Any]) -> Callable[[Dict[str, Any]], Any]:
        """``forward`` with its scores brought back to the input grid's window size."""
        if not self.plan.resampled or self.model_grid:
            return forward
        return scores_to_input_grid(forward, self.tile, self.grid_tile)

    def input_rows(self, on_rows: RowsFn, reader: WindowReader,
                   stack: contextlib.ExitStack) -> RowsFn:
        """``on_rows`` (rows of the input grid) fed from rows of this view's grid; ``reader``:
        the input's, whose nodata the output keeps (read through a handle of its own, as the
        reader thread reads the input meanwhile)."""
        if not self.model_grid:
            return on_rows
        ds = stack.enter_context(open_raster(reader.ds.name))
        return rows_to_input_grid(on_rows, ds, reader.bands, self.plan.scale)


def make_view(ds: rasterio.io.DatasetReader, card: Mapping[str, Any], tile: int, overlap: int,
              options: ViewOptions) -> View:
    """Plan how ``ds`` is read for a model with ``card`` at network ``tile``/``overlap``."""
    plan = plan_gsd(ds, card.get("gsd_m"), options.gsd, options.input_gsd)
    if not plan.resampled:
        return View(plan, tile, overlap, tile, overlap)
    if options.model_grid and plan.scale < 1:
        return View(plan, tile, overlap, tile, overlap, model_grid=True)
    size, ov = input_tiling(tile, overlap, plan.scale)
    if size < 8:
        raise InputError(f"at {plan.input_gsd:g} m a {tile}-pixel window of the model "
                         f"({plan.model_gsd:g} m) covers only {size} image pixels; use a "
                         f"larger --tile or --gsd native")
    check_tiling(size, ov)
    return View(plan, tile, overlap, size, ov)


def normalisation(group: Mapping[str, Any], reader: WindowReader,
                  stats: Optional[BandStats] = None) -> Tuple[Sequence[float], Sequence[float]]:
    """(mean, std) for ``normalise`` on raw pixels of ``reader`` under the card ``group``."""
    if needs_statistics(group) and stats is None:
        stats = image_statistics(reader)
    return effective_affine(group, stats)


def class_fractions(counts: np.ndarray, classes: Sequence[Mapping[str, Any]]) -> Dict[str, float]:
    """Share of valid pixels per class name (counts in card class order)."""
    total = max(int(counts.sum()), 1)
    return {c["name"]: float(n) / total for c, n in zip(classes, counts)}


def native_view(card: Mapping[str, Any]) -> View:
    """The view that reads an input as it is, at the card's tiling."""
    t, o = int(card["tile_size"]), int(card["overlap"])
    return View(GsdPlan(1.0, None, card.get("gsd_m")), t, o, t, o)


def add_gsd_arguments(p: argparse.ArgumentParser) -> None:
    """``--gsd`` and ``--input-gsd``: the resolution the network reads an input at."""
    p.add_argument("--gsd", default="auto",
                   help="auto (default: resample to the model's GSD when they differ by more "
                        "than 25 %%) | native | METRES")
    p.add_argument("--input-gsd", type=float, metavar="METRES",
                   help="pixel size of an input without georeferencing")
