"""Colour-coded label rasters (ISPRS style: an RGB colour per class) read as class values.

``--label-colours isprs`` is the ISPRS Vaihingen/Potsdam table; ``--label-colours FILE`` reads a
table, one class a line: ``R,G,B,name`` (commas or spaces; ``#`` starts a comment), or a JSON
list of ``{"name": …, "color": [R, G, B]}``.  Classes take the values 1..n in the table's order
and keep its names and colours, so the model card carries the colour table.  A pixel whose
colour is not in the table (ISPRS's black boundaries of eroded labels, say) is not trained on.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import rasterio

from ..jobs import InputError
from .classes import ISPRS_CLASSES, make_classes

PRESETS = {"isprs": ISPRS_CLASSES}
UNKNOWN = 255  # the value of a colour outside the table: never a class


def read_colour_table(spec: str) -> List[Dict[str, Any]]:
    """Card classes (value, name, color) of a preset name or a colour-table file."""
    if spec.lower() in PRESETS:
        return make_classes(PRESETS[spec.lower()])
    path = Path(spec)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        raise InputError(f"--label-colours {spec}: no such colour table; give "
                         f"{' or '.join(PRESETS)} or a file of 'R,G,B,name' lines") from None
    try:
        rows = _rows(text)
    except (ValueError, KeyError, TypeError, IndexError):
        raise InputError(f"{path} is not a colour table: write one class a line as "
                         f"'R,G,B,name' (e.g. 0,0,255,building), or a JSON list of "
                         f"{{\"name\": ..., \"color\": [R, G, B]}}") from None
    colours = [c for _, c in rows]
    if len(rows) < 2 or len(set(colours)) != len(colours) or \
            any(not 0 <= v <= 255 for c in colours for v in c):
        raise InputError(f"{path}: a colour table needs at least two classes with distinct "
                         f"colours of 0..255 each")
    return [{"value": i + 1, "name": name, "color": list(colour)}
            for i, (name, colour) in enumerate(rows)]


def _rows(text: str) -> List[Tuple[str, Tuple[int, int, int]]]:
    if text.lstrip().startswith("["):
        return [(str(e["name"]), tuple(int(v) for v in e["color"][:3])) for e in json.loads(text)]
    rows = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            parts = [p for p in line.replace(",", " ").split(" ") if p]
            rows.append((" ".join(parts[3:]) or f"class {len(rows) + 1}",
                         (int(parts[0]), int(parts[1]), int(parts[2]))))
    return rows


def _keys(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]


def colours_to_values(rgb: np.ndarray, classes: List[Dict[str, Any]]) -> np.ndarray:
    """3×h×w colours → h×w class values (uint8), :data:`UNKNOWN` where not in the table."""
    table = np.array([(c["color"][0] << 16) | (c["color"][1] << 8) | c["color"][2]
                      for c in classes], np.int64)
    order = np.argsort(table)
    keys = _keys(rgb)
    at = np.clip(np.searchsorted(table[order], keys), 0, len(table) - 1)
    found = table[order][at] == keys
    values = np.array([c["value"] for c in classes], np.uint8)[order][at]
    return np.where(found, values, UNKNOWN).astype(np.uint8)


def survey(path: str | Path, classes: List[Dict[str, Any]]) -> Tuple[Counter, Counter]:
    """Pixels per class value, and pixels per colour outside the table (as #rrggbb), of the
    colour-coded label raster at ``path`` (streamed by blocks)."""
    known: Counter = Counter()
    unknown: Counter = Counter()
    with rasterio.open(path) as ds:
        if ds.count < 3:
            raise InputError(f"{path} has {ds.count} band(s); colour-coded labels are RGB "
                             f"rasters: leave out --label-colours for a raster of class values")
        for _, win in ds.block_windows(1):
            rgb = ds.read([1, 2, 3], window=win)
            values = colours_to_values(rgb, classes)
            known.update(dict(zip(*np.unique(values[values != UNKNOWN], return_counts=True))))
            keys, counts = np.unique(_keys(rgb)[values == UNKNOWN], return_counts=True)
            unknown.update({f"#{k:06x}": int(n) for k, n in zip(keys, counts)})
    return known, unknown
