"""What every polygon of ``vectorize`` carries: class, size, confidence and provenance.

Fields (GeoPackage):

==================  ==============================================================================
``class_value``     the class value of the region
``class_name``      its name (raster class tags / model card, else the value)
``shape``           how its outline was drawn: ``building`` (regularised), ``natural`` (smoothed)
                    or ``as-is`` (pixel outline, optionally simplified)
``area_m2``         area of the written polygon (see :mod:`engine.io.area` for units)
``perimeter_m``     perimeter of the written polygon, same units (metres, geodesic when
                    geographic)
``prob_mean``       mean probability of the polygon's own class over its pixels, 0..1, from the
                    probability raster (predict ``--probabilities``: uint8 p×254, nodata 255);
                    NULL without one.  The uncertainty tools rank polygons by this field.
``prob_min``        the lowest such probability of any of its pixels, 0..1 (NULL without one)
``source``          file name of the class raster
``model``           model name (its card's ``name``), NULL when no model was given
``model_sha256``    SHA-256 of the model file, NULL when no model was given
``created``         UTC time of the run, ISO 8601
``rs_seg_version``  the engine version that wrote it
==================  ==============================================================================

The probability statistics are gathered block by block while polygonising: each block's regions
are burnt into an id raster and their probabilities summed, counted and minimised per id; the
partial statistics of regions crossing blocks are combined when the region is complete.  Memory
stays one block of probabilities.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from affine import Affine
from rasterio.features import rasterize
from rasterio.windows import Window

from .. import __version__
from ..io.rasters import open_raster
from ..jobs import InputError

FIELDS: List[Tuple[str, str]] = [
    ("class_value", "int"), ("class_name", "text"), ("shape", "text"), ("area_m2", "real"),
    ("perimeter_m", "real"), ("prob_mean", "real"), ("prob_min", "real"), ("source", "text"),
    ("model", "text"), ("model_sha256", "text"), ("created", "text"),
    ("rs_seg_version", "text")]

PROBABILITY_SCALE = 254  # predict's uint8 probabilities: round(p * 254); 255 is nodata
PROBABILITY_NODATA = 255

Stats = np.ndarray  # [sum of uint8 probabilities, pixel count, minimum]


def merge_stats(parts: Sequence[Optional[Stats]]) -> Optional[Stats]:
    """Statistics of a region made of ``parts`` (None parts carry no probabilities)."""
    known = [p for p in parts if p is not None]
    if not known:
        return None
    arr = np.stack(known)
    return np.array([arr[:, 0].sum(), arr[:, 1].sum(), arr[:, 2].min()])


def probability_fields(stats: Optional[Stats]) -> Dict[str, Optional[float]]:
    """``prob_mean`` and ``prob_min`` (0..1) of a region's statistics."""
    if stats is None or stats[1] == 0:
        return {"prob_mean": None, "prob_min": None}
    return {"prob_mean": float(stats[0] / stats[1] / PROBABILITY_SCALE),
            "prob_min": float(stats[2] / PROBABILITY_SCALE)}


class ProbabilityProbe:
    """Reads a probability raster on the class raster's grid and measures block regions."""

    def __init__(self, path: str | Path, classes_ds: Any) -> None:
        self.ds = open_raster(path)
        name = Path(path).name
        if (self.ds.width, self.ds.height) != (classes_ds.width, classes_ds.height) or \
                not self.ds.transform.almost_equals(classes_ds.transform):
            self.ds.close()
            raise InputError(f"{name} is not on the class raster's grid "
                             f"({self.ds.width}×{self.ds.height} vs "
                             f"{classes_ds.width}×{classes_ds.height}); give the probabilities "
                             f"written by the same predict run")
        if self.ds.dtypes[0] != "uint8":
            self.ds.close()
            raise InputError(f"{name} has data type {self.ds.dtypes[0]}; give predict's uint8 "
                             f"probability raster (--probabilities)")
        self.band_of = self._band_lookup(classes_ds)

    def _band_lookup(self, classes_ds: Any) -> np.ndarray:
        """Band index (0-based) of each class value, -1 for values without a band."""
        values: List[int] = []
        for ds in (self.ds, classes_ds):
            try:
                values = [int(c["value"]) for c in json.loads(ds.tags(1)["RS_SEG_CLASSES"])]
            except (KeyError, ValueError, TypeError):
                continue
            break
        if len(values) != self.ds.count:
            values = list(range(self.ds.count))  # untagged: band i holds class value i
        lut = np.full(max(values + [0]) + 1, -1, np.int64)
        lut[values] = np.arange(len(values))
        return lut

    def measure(self, window: Window, labels: np.ndarray, valid: np.ndarray,
                polys: Sequence[Tuple[Dict[str, Any], int]]) -> List[Optional[Stats]]:
        """Statistics of each region ``polys[i]`` (GeoJSON in pixel coordinates of the raster,
        class value) of a block read at ``window``."""
        if not polys:
            return []
        ids = rasterize(((g, i + 1) for i, (g, _) in enumerate(polys)), out_shape=labels.shape,
                        transform=Affine.translation(window.col_off, window.row_off),
                        fill=0, dtype="int32")
        probs = self.ds.read(window=window)
        lab = labels.astype(np.int64)
        inside = valid & (lab >= 0) & (lab < len(self.band_of))
        band = np.full(lab.shape, -1, np.int64)
        band[inside] = self.band_of[lab[inside]]
        use = (ids > 0) & (band >= 0)
        rows, cols = np.nonzero(use)
        p = probs[band[rows, cols], rows, cols]
        keep = p != PROBABILITY_NODATA
        who, p = ids[rows, cols][keep], p[keep].astype(np.float64)
        n = len(polys) + 1
        sums = np.bincount(who, weights=p, minlength=n)
        counts = np.bincount(who, minlength=n)
        mins = np.full(n, np.inf)
        np.minimum.at(mins, who, p)
        return [np.array([sums[i], counts[i], mins[i]]) if counts[i] else None
                for i in range(1, n)]

    def close(self) -> None:
        self.ds.close()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def provenance(source: str | Path, model_name: Optional[str] = None,
               model_path: Optional[str | Path] = None) -> Dict[str, Optional[str]]:
    """The provenance fields shared by every polygon of one run."""
    return {"source": Path(source).name, "model": model_name,
            "model_sha256": file_sha256(model_path) if model_path else None,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "rs_seg_version": __version__}
