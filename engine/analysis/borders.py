"""Borders between regularised buildings and the polygons around them: no gaps, no overlaps.

Regularising a building moves its outline off its pixels: some of its pixels fall outside the
drawn building (its *leftovers*) and the drawn building covers some of its neighbours' pixels.
Every other polygon (smoothed natural shapes and pixel outlines alike) takes the drawn buildings
as its border: the buildings are cut out of it, and it takes the leftovers nearest to its pixels.

When a building is drawn (:meth:`BuildingBorders.add`), its leftovers (its pixel polygon minus
the buildings drawn near it) are split by owner: each pixel of the building belongs to the
nearest pixel that is not a building (Euclidean distance transform over the building's window;
masked pixels own what is nearest to them and nobody takes it; outside the raster owns nothing).
Each piece is kept with its owner's class and the centre of that owner pixel, and the polygon of
that class that holds the point takes it (:meth:`BuildingBorders.fit`): a piece goes to one
polygon only.  The pieces are decided once, from the building alone, so the order in which the
polygons around it are drawn does not matter.

A polygon must be fitted after every building it borders was drawn, and before those buildings
and their leftovers are forgotten: :class:`engine.analysis.outlines.Outliner` holds polygons
back until the blocks have passed them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Dict, Iterator, List, Sequence, Tuple

import numpy as np
from affine import Affine
from rasterio.features import rasterize, shapes
from scipy import ndimage
from shapely.geometry import MultiPolygon, Point, Polygon, shape
from shapely.ops import unary_union
from shapely.prepared import prep

from .smooth import FRAME, NODATA, LabelSampler

MIN_PIECE_PX2 = 1e-4  # slivers of overlay arithmetic, not area anyone could see


@dataclass
class _Piece:
    value: int  # the owner's class
    geom: Polygon
    source: Point  # centre of the owner pixel: the polygon holding it takes the piece


def polygons(geom: Any) -> Iterator[Polygon]:
    """The polygon parts of a geometry (overlays also give lines and points)."""
    for g in getattr(geom, "geoms", [geom]):
        if isinstance(g, MultiPolygon):
            yield from polygons(g)
        elif isinstance(g, Polygon) and g.area > MIN_PIECE_PX2:
            yield g


class BuildingBorders:
    """The leftovers of drawn buildings, waiting for the polygons that take them (pixel
    coordinates); see the module docstring."""

    CELL = 256

    def __init__(self, sampler: LabelSampler, building_values: Collection[int]) -> None:
        self.sample, self.building = sampler, sorted(set(building_values))
        self.pieces: Dict[int, _Piece] = {}
        self.cells: Dict[Tuple[int, int], List[int]] = {}
        self._next = 0

    def add(self, pixels: Polygon, drawn: Sequence[Polygon]) -> None:
        """Keep the leftovers of one building: ``pixels`` is its pixel polygon, ``drawn`` the
        buildings drawn near it (itself included)."""
        left = pixels.difference(unary_union(list(drawn))) if drawn else pixels
        if left.is_empty or left.area <= MIN_PIECE_PX2:
            return
        minx, miny, maxx, maxy = (int(round(v)) for v in pixels.bounds)
        x0, y0 = minx - 1, miny - 1
        rows, cols = np.mgrid[y0:maxy + 1, x0:maxx + 1]
        labels = self.sample(rows, cols)
        inside = rasterize([(pixels, 1)], out_shape=labels.shape,
                           transform=Affine.translation(x0, y0), dtype="uint8").astype(bool)
        owners = ~np.isin(labels, self.building) & (labels != FRAME)
        if not owners.any():
            return
        _, (ir, ic) = ndimage.distance_transform_edt(~owners, return_indices=True)
        owner = labels[ir, ic]
        for value in np.unique(owner[inside]).tolist():
            if value == NODATA:
                continue
            mask = inside & (owner == value)
            for geom, _ in shapes(mask.astype(np.uint8), mask=mask, connectivity=4,
                                  transform=Affine.translation(x0, y0)):
                for piece in polygons(left.intersection(shape(geom))):
                    at = piece.representative_point()
                    r, c = int(np.floor(at.y)) - y0, int(np.floor(at.x)) - x0
                    self._store(_Piece(int(value), piece,
                                       Point(ic[r, c] + x0 + 0.5, ir[r, c] + y0 + 0.5)))

    def fit(self, value: int, pixels: Polygon, drawn: Sequence[Polygon],
            buildings: Sequence[Polygon]) -> List[Polygon]:
        """The outline ``drawn`` of a region of class ``value`` (pixel polygon ``pixels``) with
        the leftovers it owns added and the ``buildings`` near it cut out."""
        held = prep(pixels)
        mine = [k for k in self._near(pixels.bounds)
                if self.pieces[k].value == value and held.contains(self.pieces[k].source)]
        taken = [self.pieces.pop(k).geom for k in mine]
        if not taken and not buildings:
            return list(drawn)
        out = unary_union([*drawn, *taken])
        if buildings:
            out = out.difference(unary_union(list(buildings)))
        return list(polygons(out))

    def forget_above(self, y: float) -> None:
        """Drop the leftovers whose owner pixel lies above row ``y`` (no polygon still to come
        holds it)."""
        for k in [k for k, p in self.pieces.items() if p.source.y < y]:
            del self.pieces[k]
        for key in list(self.cells):
            left = [k for k in self.cells[key] if k in self.pieces]
            if left:
                self.cells[key] = left
            else:
                del self.cells[key]

    def _store(self, piece: _Piece) -> None:
        k = self._next
        self._next += 1
        self.pieces[k] = piece
        for key in self._cells_of(piece.source.bounds):
            self.cells.setdefault(key, []).append(k)

    def _near(self, bounds: Tuple[float, float, float, float]) -> List[int]:
        return sorted({k for key in self._cells_of(bounds) for k in self.cells.get(key, [])
                       if k in self.pieces})

    def _cells_of(self, bounds: Tuple[float, float, float, float]) -> Iterator[Tuple[int, int]]:
        c = self.CELL
        minx, miny, maxx, maxy = bounds
        for cy in range(int(miny // c), int(maxy // c) + 1):
            for cx in range(int(minx // c), int(maxx // c) + 1):
                yield cx, cy
