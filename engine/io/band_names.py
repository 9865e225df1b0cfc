"""Raster bands matched to a model's bands by name, or a hint computed from the real counts.

A raster names its bands through band descriptions (Sentinel-2 and Landsat products, files from
``gdal_translate``/rasterio writers) or GDAL colour interpretations (red, green, blue, gray).
Names are compared case-insensitively through the usual aliases (``B02``/``blue``,
``B08``/``nir``, ``B11``/``swir16`` …).  Sentinel-2 band names are the zero-padded ones
(``B02``, ``B8A``); ``B1``…``B9`` are RS Seg's generic names for bands without a name and match
nothing, so a generic card falls back to taking the raster's data bands in order.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import rasterio
from rasterio.enums import ColorInterp

from ..jobs import InputError

# canonical name → aliases (compared after lower-casing and dropping spaces, '_' and '-')
ALIASES: Dict[str, Tuple[str, ...]] = {
    "coastal": ("b01", "coastal", "aerosol", "coastalaerosol", "ca"),
    "blue": ("b02", "blue", "b"),
    "green": ("b03", "green", "g"),
    "red": ("b04", "red", "r"),
    "rededge1": ("b05", "rededge1", "re1", "rededge"),
    "rededge2": ("b06", "rededge2", "re2"),
    "rededge3": ("b07", "rededge3", "re3"),
    "nir": ("b08", "nir", "nearinfrared", "infrared", "ir"),
    "nir08": ("b8a", "nir08", "nirnarrow", "narrownir", "rededge4", "re4"),
    "watervapour": ("b09", "watervapour", "watervapor", "wv"),
    "cirrus": ("b10", "cirrus", "swircirrus"),
    "swir16": ("b11", "swir16", "swir1", "swir"),
    "swir22": ("b12", "swir22", "swir2"),
    "gray": ("gray", "grey", "pan", "panchromatic", "l"),
}
_CANONICAL = {alias: name for name, aliases in ALIASES.items() for alias in aliases}
_INTERP = {ColorInterp.red: "red", ColorInterp.green: "green", ColorInterp.blue: "blue",
           ColorInterp.gray: "gray"}


def canonical(name: Optional[str]) -> Optional[str]:
    """The canonical band name for ``name`` (``'B02'`` → ``'blue'``), or None when unknown."""
    if not name:
        return None
    return _CANONICAL.get(re.sub(r"[\s_\-]+", "", str(name).lower()))


def raster_band_names(ds: rasterio.io.DatasetReader) -> List[Optional[str]]:
    """Each band's canonical name from its description, else its colour interpretation."""
    out = []
    for i, interp in enumerate(ds.colorinterp):
        name = canonical(ds.descriptions[i]) if ds.descriptions[i] else None
        out.append(name if name or interp == ColorInterp.alpha else _INTERP.get(interp))
    return out


def match_by_name(ds: rasterio.io.DatasetReader, card_bands: Sequence[Mapping[str, Any]],
                  label: str) -> Optional[Tuple[List[int], Optional[str]]]:
    """(1-based band indexes, note) when the model's bands are found by name in ``ds``, None
    when names cannot decide; :class:`InputError` when the raster names its bands and some the
    model needs are missing."""
    wanted = [canonical(b["name"]) for b in card_bands]
    have = raster_band_names(ds)
    if None in wanted or not any(have):
        return None
    described = all(bool(d) for d in ds.descriptions) and all(have)
    found, missing = [], []
    for band, name in zip(card_bands, wanted):
        hits = [i + 1 for i, h in enumerate(have) if h == name]
        if len(hits) == 1:
            found.append(hits[0])
        else:
            missing.append(str(band["name"]))
    if missing:
        if not described:  # colour interpretations alone are too weak to refuse on
            return None
        names = ", ".join(ds.descriptions)
        raise InputError(
            f"the model needs bands {', '.join(b['name'] for b in card_bands)}; {label} has "
            f"{names}: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing or "
            f"ambiguous. Give a raster with those bands, or pick bands in the model's order "
            f"with --bands / BANDS")
    if found == list(range(1, len(found) + 1)):
        return found, None
    where = ", ".join(f"{b['name']} ← band {i} ({ds.descriptions[i - 1] or have[i - 1]})"
                      for b, i in zip(card_bands, found))
    return found, f"bands matched by name: {where}"


def count_hint(model_bands: int, names: str, data: int, label: str) -> str:
    """The band-mismatch sentence with a fix computed from the real counts."""
    head = f"model expects {model_bands} bands ({names}); {label} has {data} data band(s)."
    if data > model_bands:
        pick = ",".join(str(i) for i in range(1, model_bands + 1))
        return (f"{head} Pick {model_bands} of its {data} bands in the model's order with "
                f"--bands / BANDS (e.g. --bands {pick} if those are {names}), or name the "
                f"file's bands so they are matched by name")
    if data == 1:
        ones = ",".join(["1"] * model_bands)
        return (f"{head} Use a model trained on single-band imagery, or repeat the band with "
                f"--bands {ones} if the model accepts a grey image")
    return (f"{head} Give an image with the model's {model_bands} bands or use a model trained "
            f"on {data}-band imagery")
