"""What changed between two rounds of the analyst's loop: the class rasters of the parent model
and of its refined successor, on the same grid.

:func:`compare_rounds` streams both rasters by strips and returns the area that changed class
(in total and per from → to pair); it optionally writes a difference raster holding the new
class where the class changed and nodata elsewhere, styled with the new raster's colours.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
from rasterio.windows import Window

from ..io.gsd import raster_gsd
from ..io.rasters import CLASS_NODATA, open_raster, output_profile
from ..io.writer import StripWriter
from ..jobs import CancelledFn, InputError, Job, ProgressFn, atomic_output, check_writable_output
from .evaluation import prediction_classes

STRIP_ROWS = 512


def compare_rounds(before: str | Path, after: str | Path, difference: Optional[str | Path] = None,
                   progress: Optional[ProgressFn] = None,
                   cancelled: Optional[CancelledFn] = None) -> Dict[str, Any]:
    """Pixels and area (m², when georeferenced) whose class differs between ``before`` and
    ``after``; ``pairs`` lists each from → to change, largest first."""
    job = Job(progress, cancelled)
    if difference is not None:
        check_writable_output(difference)
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(open_raster(before))
        b = stack.enter_context(open_raster(after))
        if (a.width, a.height, a.transform) != (b.width, b.height, b.transform):
            raise InputError(f"{Path(after).name} ({b.width}×{b.height}) is not on the grid of "
                             f"{Path(before).name} ({a.width}×{a.height}); compare two class "
                             f"rasters predicted from the same image")
        writer = None
        if difference is not None:
            tmp = stack.enter_context(atomic_output(difference))
            colormap = None
            with contextlib.suppress(ValueError):  # a class raster without a colour table
                colormap = b.colormap(1)
            writer = StripWriter(tmp, output_profile(b, 1, "uint8", CLASS_NODATA),
                                 colormap=colormap, tags=b.tags(1),
                                 descriptions=["new class where it changed"])
            stack.callback(writer.close)
        pairs = np.zeros(256 * 256, np.int64)
        valid_pixels = 0
        nodata_a = a.nodata if a.nodata is not None else CLASS_NODATA
        nodata_b = b.nodata if b.nodata is not None else CLASS_NODATA
        for y in range(0, a.height, STRIP_ROWS):
            job.check()
            win = Window(0, y, a.width, min(STRIP_ROWS, a.height - y))
            old, new = a.read(1, window=win), b.read(1, window=win)
            valid = (old != nodata_a) & (new != nodata_b)
            changed = valid & (old != new)
            valid_pixels += int(valid.sum())
            codes = old[changed].astype(np.int64) * 256 + new[changed].astype(np.int64)
            pairs += np.bincount(codes, minlength=pairs.size)
            if writer is not None:
                writer.put(y, np.where(changed, new, CLASS_NODATA).astype(np.uint8)[None])
            job.report((y + win.height) / a.height, "compare rounds")
        gsd = raster_gsd(b)
        names = {**prediction_classes(a), **prediction_classes(b)}
    pixel_m2 = gsd * gsd if gsd else None
    changed_pixels = int(pairs.sum())
    order = np.argsort(pairs)[::-1]
    listed = []
    for code in order[:int((pairs > 0).sum())]:
        f, t = divmod(int(code), 256)
        listed.append({"from": f, "to": t, "from_name": names.get(f, str(f)),
                       "to_name": names.get(t, str(t)), "pixels": int(pairs[code]),
                       "m2": pairs[code] * pixel_m2 if pixel_m2 else None})
    return {"difference": str(difference) if difference else None,
            "changed_pixels": changed_pixels,
            "changed_m2": changed_pixels * pixel_m2 if pixel_m2 else None,
            "changed_share": changed_pixels / valid_pixels if valid_pixels else 0.0,
            "pairs": listed}
