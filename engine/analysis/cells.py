"""A raster cut into square cells: the grid the review list ranks and groups places on."""
from __future__ import annotations

import math

import numpy as np


def cell_blocks(data: np.ndarray, cell: int, fill) -> np.ndarray:
    """``data`` cut into cells: rows × cols × cell² (the ragged edge padded with ``fill``)."""
    rows, cols = math.ceil(data.shape[0] / cell), math.ceil(data.shape[1] / cell)
    padded = np.full((rows * cell, cols * cell), fill, data.dtype)
    padded[:data.shape[0], :data.shape[1]] = data
    return padded.reshape(rows, cell, cols, cell).swapaxes(1, 2).reshape(rows, cols, -1)
