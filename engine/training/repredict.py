"""Re-predict after a round of the analyst's loop, over the whole image or the current extent.

Over an extent (``bounds``) only that window of the image is segmented, normalised with the
whole image's statistics so it matches the rest of the layer.  An analyst then expects the
class layer to show the new model there and the previous round elsewhere: an output whose
previous round is given (``previous`` for the classes, ``previous_uncertainty`` for the
uncertainty) is that raster with the extent re-predicted (the next round can then list places
and refine over the whole image); without one it covers the extent alone.  The difference
raster and the changed area are computed over the extent.
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import rasterio
from rasterio.windows import Window

from ..analysis.rounds import compare_rounds
from ..io.crop import crop_vrt
from ..io.rasters import bounds_window, open_raster
from ..inference.pipeline import image_band_statistics, predict
from ..jobs import CancelledFn, InputError, Job, ProgressFn, atomic_output
from ..formats.modelfile import read_card

Bounds = Tuple[float, float, float, float]  # left, bottom, right, top in the image's CRS


def repredict(model: str | Path, image: str | Path, output: str | Path,
              previous: Optional[str | Path] = None, difference: Optional[str | Path] = None,
              uncertainty: Optional[str | Path] = None, device: str = "auto",
              bounds: Optional[Bounds] = None,
              previous_uncertainty: Optional[str | Path] = None,
              progress: Optional[ProgressFn] = None,
              cancelled: Optional[CancelledFn] = None) -> Dict[str, Any]:
    """Segment ``image`` (or its part inside ``bounds``, in the image's CRS) with the refined
    ``model`` and compare with ``previous`` (the parent's class raster): changed pixels and m²,
    and the ``difference`` raster when asked."""
    check_difference(previous, difference)
    job = Job(progress, cancelled)
    steps = lambda f, m: job.report(0.9 * f, m) if f >= 0 else job.log(m)  # noqa: E731
    if bounds is None:
        result = predict(model, image, output, uncertainty=uncertainty, device=device,
                         progress=steps, cancelled=cancelled)
        if previous is not None:
            result["compare"] = compare_rounds(previous, output, difference, cancelled=cancelled)
    else:
        result = _repredict_extent(model, image, output, previous, difference, uncertainty,
                                   device, bounds, previous_uncertainty, steps, cancelled)
    job.report(1.0, "re-predict: done")
    return result


def check_difference(previous: Optional[str | Path], difference: Optional[str | Path]) -> None:
    """Refuse a difference layer without the previous round's class raster; callers that
    refine first check this before training, so a finished model is never lost to it."""
    if difference is not None and previous is None:
        raise InputError("a difference layer needs the previous round's class raster "
                         "(--prediction / PREDICTION)")


def extent_window(image: str | Path, bounds: Bounds) -> Window:
    """The pixel window of ``bounds`` on ``image`` (whole pixels, inside the image)."""
    with open_raster(image) as ds:
        win = bounds_window(ds, bounds)
    if win is None:
        raise InputError(f"the extent {', '.join(f'{v:.1f}' for v in bounds)} does not meet "
                         f"{Path(image).name}; zoom to the image or re-predict the whole layer")
    return win


def _repredict_extent(model, image, output, previous, difference, uncertainty, device, bounds,
                      previous_uncertainty, steps, cancelled) -> Dict[str, Any]:
    window = extent_window(image, bounds)
    with open_raster(image) as ds:
        grid = (ds.width, ds.height, ds.transform)
    for given in (previous, previous_uncertainty):
        if given is not None:
            with open_raster(given) as ds:
                if (ds.width, ds.height, ds.transform) != grid:
                    raise InputError(f"{Path(given).name} is not on the grid of "
                                     f"{Path(image).name}; give the previous round's rasters "
                                     f"of this image")
    with tempfile.TemporaryDirectory(prefix=".rs-seg-repredict-",
                                     dir=Path(output).parent if str(Path(output).parent) else ".") \
            as tmp:
        work = Path(tmp)
        crop = crop_vrt(image, window, work / "extent.vrt")
        part, part_unsure = work / "classes.tif", work / "uncertainty.tif"
        stats = image_band_statistics(read_card(model), image)  # the extent as in the whole
        result = predict(model, crop, part, uncertainty=part_unsure if uncertainty else None,
                         device=device, statistics=stats, progress=steps, cancelled=cancelled)
        _place(part, output, previous, window)
        if uncertainty is not None:
            _place(part_unsure, uncertainty, previous_uncertainty, window)
        if previous is not None:
            before = work / "before.vrt"
            crop_vrt(previous, window, before)
            result["compare"] = compare_rounds(before, part, difference, cancelled=cancelled)
    result.update(output=str(output), uncertainty=str(uncertainty) if uncertainty else None,
                  extent=list(bounds), window=[int(window.col_off), int(window.row_off),
                                               int(window.width), int(window.height)])
    return result


def _place(part: Path, output: str | Path, previous: Optional[str | Path], window: Window) -> None:
    """``output``: ``previous`` with ``part`` written into ``window``, or ``part`` alone."""
    with atomic_output(output) as tmp:
        if previous is None:
            shutil.copyfile(part, tmp)
            return
        with open_raster(previous) as ds, open_raster(part) as src:
            if ds.count != src.count or ds.dtypes[0] != src.dtypes[0]:
                raise InputError(f"{Path(previous).name} is not a raster of the image like the "
                                 f"re-predicted one ({src.count} band(s) of {src.dtypes[0]}); "
                                 f"give the previous round's own output")
            profile = {**ds.profile, "driver": "GTiff", "tiled": True, "blockxsize": 256,
                       "blockysize": 256, "compress": "deflate"}
            colormap = None
            with contextlib.suppress(ValueError):
                colormap = ds.colormap(1)
            with rasterio.open(tmp, "w", **profile) as dst:
                for _, win in dst.block_windows(1):
                    dst.write(ds.read(window=win), window=win)
                dst.write(src.read(), window=window)
                if colormap:
                    dst.write_colormap(1, colormap)
                dst.update_tags(**ds.tags())
                dst.update_tags(1, **ds.tags(1))
                dst.descriptions = ds.descriptions


def format_change(compare: Dict[str, Any]) -> str:
    """One line: how much changed class between rounds."""
    area = (f"{compare['changed_m2']:.0f} m², " if compare.get("changed_m2") is not None else "")
    return (f"changed class: {area}{compare['changed_pixels']} px "
            f"({100 * compare['changed_share']:.1f} %)")
