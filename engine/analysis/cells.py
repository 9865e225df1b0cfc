"""A raster cut into square cells: the grid the review list ranks and groups places on."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
from rasterio.windows import Window

from ..io.rasters import open_raster
from ..jobs import InputError


def cell_blocks(data: np.ndarray, cell: int, fill) -> np.ndarray:
    """``data`` cut into cells: rows × cols × cell² (the ragged edge padded with ``fill``)."""
    rows, cols = math.ceil(data.shape[0] / cell), math.ceil(data.shape[1] / cell)
    padded = np.full((rows * cell, cols * cell), fill, data.dtype)
    padded[:data.shape[0], :data.shape[1]] = data
    return padded.reshape(rows, cell, cols, cell).swapaxes(1, 2).reshape(rows, cols, -1)


def read_on_grid(path: str | Path, grid, window: Tuple[int, int, int, int],
                 shape: Tuple[int, int], fix: str,
                 bands: Optional[Sequence[int]] = None) -> np.ndarray:
    """``window`` (col, row, w, h) of ``path`` read at ``shape`` (nearest), like the raster
    whose ``grid`` (width, height, transform) it must share; ``fix`` ends the sentence when it
    does not (what to give instead).  ``bands``: default the first band alone (a 2-D array)."""
    with open_raster(path) as ds:
        if (ds.width, ds.height, ds.transform) != grid:
            raise InputError(f"{Path(path).name} is not on the grid of the uncertainty raster; "
                             f"{fix}")
        indexes = 1 if bands is None else list(bands)
        out_shape = shape if bands is None else (len(indexes),) + tuple(shape)
        return ds.read(indexes, window=Window(*window), out_shape=out_shape, resampling=0)
