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
from typing import Iterator

import rasterio.shutil

from ..jobs import InputError, atomic_output, remove_with_sidecars
from .rasters import BLOCK, bounded_gdal_cache

FORMATS = ("gtiff", "cog")
MODE, AVERAGE = "mode", "average"  # overview resampling of codes (classes, change) / probabilities


def check_format(output_format: str) -> str:
    """``output_format`` when it is one of :data:`FORMATS`, else a sentence."""
    if output_format not in FORMATS:
        raise InputError(f"output format must be gtiff or cog (got {output_format!r}); "
                         f"use --format gtiff for a plain tiled GeoTIFF or --format cog for a "
                         f"Cloud-Optimized GeoTIFF with overviews")
    return output_format


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
