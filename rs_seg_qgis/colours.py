"""Colours that read on any basemap: light classes tinted, a change colour unlike every class
colour, and the from-to legend reduced to its main transitions (pure functions, no Qt)."""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

RGB = Sequence[int]
LIGHT = 0.85          # relative luminance above which a colour vanishes on a white canvas
TINT = 0.78           # light colours are scaled to this: still light, but visible with a swatch
# Change candidates, best first: none of them is a usual class colour (ISPRS uses red,
# yellow, green, cyan, blue, white).
CHANGE_CANDIDATES: List[Tuple[int, int, int]] = [(255, 0, 255), (255, 128, 0), (128, 0, 255),
                                                 (0, 0, 0)]
FAR_ENOUGH = 150.0    # RGB distance at which two colours are not mistaken for one another
MAIN_TRANSITIONS = 8  # from-to transitions with their own colour; the rest are "other"
OTHER_COLOUR = (150, 150, 150, 255)


def luminance(rgb: RGB) -> float:
    """Relative luminance 0 (black) .. 1 (white) of an sRGB colour (Rec. 709 weights)."""
    r, g, b = (int(v) / 255 for v in list(rgb)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def is_light(rgb: RGB) -> bool:
    return luminance(rgb) > LIGHT


def readable(rgb: RGB) -> List[int]:
    """``rgb`` (with its alpha) tinted when it is too light to see on a white canvas."""
    values = [int(v) for v in rgb]
    if len(values) >= 4 and values[3] == 0 or not is_light(values):
        return values
    return [round(v * TINT) for v in values[:3]] + values[3:]


def _distance(a: RGB, b: RGB) -> float:
    return sum((int(x) - int(y)) ** 2 for x, y in zip(list(a)[:3], list(b)[:3])) ** 0.5


def change_colour(avoid: Sequence[RGB] = ()) -> Tuple[int, int, int]:
    """The first candidate (magenta) far enough from every colour in ``avoid``; when none is,
    the one farthest from them."""
    visible = [c for c in avoid if len(c) < 4 or int(c[3]) > 0]
    if not visible:
        return CHANGE_CANDIDATES[0]
    nearest = {c: min(_distance(c, v) for v in visible) for c in CHANGE_CANDIDATES}
    return next((c for c in CHANGE_CANDIDATES if nearest[c] >= FAR_ENOUGH),
                max(CHANGE_CANDIDATES, key=nearest.__getitem__))


def arrow(name: str) -> str:
    """'forest → building' for the engine's 'forest -> building'."""
    return name.replace(" -> ", " → ")


def from_to_legend(codes: Dict[int, str], areas: Dict[int, float],
                   palette: Sequence[RGB]) -> List[Tuple[int, str, List[int]]]:
    """(code, label, colour) of every from-to code: unchanged (0) transparent; the
    :data:`MAIN_TRANSITIONS` largest transitions by area with their own colour and their share
    of the changed area, sorted by area; the others grey and labelled "other"."""
    changed = sorted((c for c in codes if c != 0), key=lambda c: (-areas.get(c, 0.0), c))
    total = sum(areas.get(c, 0.0) for c in changed) or 1.0
    rows: List[Tuple[int, str, List[int]]] = []
    for rank, code in enumerate(changed):
        if rank < MAIN_TRANSITIONS and areas.get(code, 0.0) > 0:
            share = 100.0 * areas.get(code, 0.0) / total
            rows.append((code, f"{arrow(codes[code])} ({share:.1f} %)",
                         list(palette[rank % len(palette)])))
        else:
            rows.append((code, "other", list(OTHER_COLOUR)))
    if 0 in codes:
        rows.append((0, arrow(codes[0]), [0, 0, 0, 0]))
    return rows
