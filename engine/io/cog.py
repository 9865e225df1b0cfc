"""Cloud-Optimized GeoTIFF outputs (``--format cog``).

The sliding-window writers stream a tiled GeoTIFF; a COG needs its overviews and a fixed layout
(overviews first, tiles in order), which cannot be streamed row by row.  So for ``cog`` the
writer streams to a hidden GeoTIFF beside the output; once that is complete GDAL's COG driver
copies it, building the overviews itself (mode for class codes, average for probabilities),
to the output's temporary name, which is then renamed into place
(:func:`engine.jobs.atomic_output`): a cancelled or failed run leaves neither the output nor
either temporary file.  GDAL streams the copy block by block under the engine's bounded cache, so
memory does not grow with raster area; the colour table, nodata, scales, band descriptions and
metadata tags travel with it.
"""
from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Dict, Iterable, Iterator, Mapping, Optional

import rasterio.shutil

from ..jobs import InputError, atomic_output, check_distinct, check_outputs, remove_with_sidecars
from .rasters import BLOCK, bounded_gdal_cache

FORMATS = ("gtiff", "cog")
EXTENSIONS = (".tif", ".tiff")  # both formats are GeoTIFFs: the extension must say so
MODE, AVERAGE = "mode", "average"  # overview resampling of codes (classes, change) / probabilities


def check_format(output_format: str) -> str:
    """``output_format`` when it is one of :data:`FORMATS`, else a sentence."""
    if output_format not in FORMATS:
        raise InputError(f"output format must be gtiff or cog (got {output_format!r}); "
                         f"use --format gtiff for a plain tiled GeoTIFF or --format cog for a "
                         f"Cloud-Optimized GeoTIFF with overviews")
    return output_format


def check_extension(output: str | Path) -> Path:
    """``output`` when its extension is a GeoTIFF's (.tif, .tiff), else a sentence: the raster
    outputs are GeoTIFFs (``--format`` picks plain or Cloud-Optimized), and a file named .png or
    .jpg holding one would mislead every program that opens it."""
    out = Path(output)
    if out.suffix.lower() not in EXTENSIONS:
        raise InputError(f"{out} ends in {out.suffix or 'no extension'}, but raster outputs are "
                         f"GeoTIFFs; name it .tif or .tiff (--format gtiff or cog; for another "
                         f"format convert afterwards, e.g. gdal_translate -of PNG)")
    return out


def check_raster_outputs(outputs: Mapping[str, Optional[str | Path]],
                         inputs: Iterable[Optional[str | Path]] = (),
                         others: Mapping[str, Optional[str | Path]] = {},
                         folders: Iterable[str] = ()) -> Dict[str, Path]:
    """:func:`engine.jobs.check_outputs` on ``outputs`` (GeoTIFFs: each also named .tif/.tiff)
    and ``others`` (the same job's other files: tables, polygons; ``folders``) together."""
    every = {**outputs, **others}
    check_distinct(every, inputs)  # first: an output that is the model file says so
    for path in outputs.values():
        if path is not None:
            check_extension(path)
    return check_outputs(every, inputs, folders)


def source_path(output: str | Path) -> Path:
    """The hidden GeoTIFF a COG output is streamed to.  A fixed name, not a random one: the
    ranks of a torchrun job must agree on it (their part files are named after it)."""
    out = Path(output)
    return out.with_name(f".{out.name}.gtiff.partial")


def to_cog(source: str | Path, destination: str | Path, resampling: str) -> None:
    """Copy the GeoTIFF ``source`` to a COG at ``destination``, with overviews resampled by
    ``resampling`` (:data:`MODE` or :data:`AVERAGE`)."""
    with bounded_gdal_cache():
        rasterio.shutil.copy(str(source), str(destination), driver="COG", COMPRESS="DEFLATE",
                             PREDICTOR="YES", BLOCKSIZE=BLOCK, BIGTIFF="IF_SAFER",
                             OVERVIEWS="IGNORE_EXISTING", OVERVIEW_RESAMPLING=resampling.upper())


@contextlib.contextmanager
def cog_output(output: str | Path, resampling: str) -> Iterator[Path]:
    """Yield the path to stream ``output``'s GeoTIFF to; when the body succeeds, convert it to a
    COG at ``output`` (atomically).  Either way the intermediate file is removed."""
    with atomic_output(output) as tmp:
        source = source_path(output)
        remove_with_sidecars(source)  # a killed run's: the lock on ``output`` is ours now
        try:
            yield source
            to_cog(source, tmp, resampling)
        finally:
            remove_with_sidecars(source)


def stream_path(output: str | Path, output_format: str) -> Path:
    """The file the streaming writer writes for ``output``: itself (``gtiff``) or the hidden
    GeoTIFF converted into it (``cog``)."""
    return Path(output) if check_format(output_format) == "gtiff" else source_path(output)


def writer_path(stack: contextlib.ExitStack, output: str | Path, output_format: str,
               resampling: str) -> Path:
    """:func:`stream_path`; for ``cog`` the conversion into ``output`` is entered on ``stack``,
    so it runs when the stack closes without error."""
    if output_format == "cog":
        return stack.enter_context(cog_output(output, resampling))
    return stream_path(output, output_format)


def add_format_argument(parser: argparse.ArgumentParser) -> None:
    """``--format gtiff|cog`` of the commands writing rasters."""
    parser.add_argument("--format", choices=FORMATS, default="gtiff",
                        help="gtiff: tiled GeoTIFF (default); cog: Cloud-Optimized GeoTIFF with "
                             "overviews")
