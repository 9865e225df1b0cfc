"""Resolution-aware windows: read an input window at the model's GSD, bring scores back.

The sliding-window grid stays on the input raster: a window of ``size`` input pixels is read with
rasterio's ``out_shape`` straight to the network's ``tile`` pixels (GDAL resamples, using overviews
when there are any), the network runs there, and its class scores are resized back to ``size``
pixels before the one stitcher blends them on the input grid.  So every output pixel is covered
exactly as in native inference, memory stays that of one window, and the output keeps the input's
grid.

An input finer than the model (0.25 m for a 0.5 m model) is blended on the model's grid instead
(:class:`ModelGridReader`, :func:`rows_to_input_grid`): the grid and the stitcher run at the model's
GSD, so scores are never enlarged and blended at four times their pixels; only the final class
codes (and probabilities when asked) are brought to the input grid, by nearest neighbour, with
the input's own nodata.  That keeps resampled inference at about native cost.

Score resizing is two small matrix products (rows then columns) with a triangle (bilinear,
antialiased when shrinking) kernel whose rows sum to one, so probabilities stay probabilities and
the same code runs on numpy arrays and torch tensors.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from .rasters import WindowData, WindowReader, reading


def interpolation_matrix(n_out: int, n_in: int) -> np.ndarray:
    """``n_out``×``n_in`` linear-interpolation weights mapping a 1-D signal of ``n_in`` samples to
    ``n_out`` (pixel centres aligned; the kernel widens when shrinking, as an antialias filter)."""
    scale = n_in / n_out
    support = max(1.0, scale)
    centres = (np.arange(n_out) + 0.5) * scale - 0.5
    src = np.arange(n_in)
    w = np.maximum(0.0, 1.0 - np.abs(src[None, :] - centres[:, None]) / support)
    empty = w.sum(1) == 0
    if empty.any():  # a centre beyond the edge takes the nearest sample
        w[empty, np.clip(np.rint(centres[empty]).astype(int), 0, n_in - 1)] = 1.0
    return (w / w.sum(1, keepdims=True)).astype(np.float32)


def input_tiling(tile: int, overlap: int, scale: float) -> Tuple[int, int]:
    """Window edge and overlap in input pixels for a network ``tile``/``overlap`` at ``scale``
    model pixels per input pixel."""
    size = max(1, int(round(tile / scale)))
    ov = int(round(overlap / scale))
    return size, min(ov, (size - 1) // 2)


def _nearest(mask: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """``mask`` resized to ``shape`` by nearest neighbour (centre sampling)."""
    h, w = mask.shape
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * h / shape[0]).astype(int), h - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * w / shape[1]).astype(int), w - 1)
    return mask[rows[:, None], cols[None, :]]


class ResampledWindowReader(WindowReader):
    """A :class:`WindowReader` whose windows of ``size`` input pixels arrive as ``tile`` pixels.

    ``pixels`` and ``valid`` are at the network's resolution; ``grid_valid`` is the validity of
    the ``size``×``size`` input window, which the stitcher needs.
    """

    def __init__(self, ds: rasterio.io.DatasetReader, bands: Sequence[int], tile: int) -> None:
        super().__init__(ds, bands)
        self.tile = tile

    def read(self, x: int, y: int, size: int) -> WindowData:
        w, h = self.ds.width, self.ds.height
        x1, y1 = min(x + size, w), min(y + size, h)
        cw, ch = x1 - x, y1 - y
        t = self.tile
        ow, oh = (max(1, min(t, int(round(n * t / size)))) for n in (cw, ch))
        win = Window(x, y, cw, ch)
        resampling = Resampling.average if t < size else Resampling.bilinear
        with reading(self.ds, win):
            pixels = self.ds.read(self.bands, window=win, out_shape=(len(self.bands), oh, ow),
                                  out_dtype="float32", resampling=resampling)
            native = self.input_validity(win)
        finite = np.isfinite(pixels).all(axis=0)
        valid = _nearest(native, (oh, ow)) & finite
        if not finite.all():
            pixels = np.nan_to_num(pixels, nan=0.0, posinf=0.0, neginf=0.0)
            native &= _nearest(finite, (ch, cw))
        if (ow, oh) != (t, t):
            pixels = np.pad(pixels, ((0, 0), (0, t - oh), (0, t - ow)), mode="symmetric")
            valid = np.pad(valid, ((0, t - oh), (0, t - ow)), constant_values=False)
        grid_valid = np.pad(native, ((0, size - ch), (0, size - cw)), constant_values=False)
        return WindowData(pixels, valid, grid_valid)

    def input_validity(self, win: Window) -> np.ndarray:
        """Validity of the input pixels of ``win`` (nodata value, alpha band or mask)."""
        if not self._alpha_is_data:
            return self.ds.dataset_mask(window=win) > 0
        nodata = self.ds.nodata
        if nodata is None:
            return np.ones((int(win.height), int(win.width)), dtype=bool)
        return (self.ds.read(self.bands, window=win) != nodata).any(axis=0)


class ModelGridReader(ResampledWindowReader):
    """A :class:`ResampledWindowReader` addressed in pixels of the model's grid over a finer
    input (``scale`` < 1 model pixels per input pixel): window (x, y, size) covers the input
    pixels from x/scale, y/scale over size/scale, delivered as ``tile`` pixels."""

    def __init__(self, ds: rasterio.io.DatasetReader, bands: Sequence[int], tile: int,
                 scale: float) -> None:
        super().__init__(ds, bands, tile)
        self.scale = scale

    def read(self, x: int, y: int, size: int) -> WindowData:
        s = self.scale
        n = max(1, int(round(size / s)))
        data = super().read(int(round(x / s)), int(round(y / s)), n)
        # a model pixel is valid when any input pixel it stands for is: every valid input pixel
        # then gets a class, and the input's own nodata is restored on the input grid
        starts = np.searchsorted(np.floor((np.arange(n) + 0.5) * self.tile / n), np.arange(self.tile))
        valid = np.logical_or.reduceat(np.logical_or.reduceat(data.output_valid, starts, axis=0),
                                       starts, axis=1)
        return WindowData(data.pixels, valid)


def model_grid_size(width: int, height: int, scale: float) -> Tuple[int, int]:
    """Width and height of the model's grid over a ``width``×``height`` input."""
    return max(1, int(np.ceil(width * scale))), max(1, int(np.ceil(height * scale)))


RowsFn = Callable[[int, List[np.ndarray]], None]


def rows_to_input_grid(on_rows: RowsFn, ds: rasterio.io.DatasetReader, bands: Sequence[int],
                       scale: float, nodata: int = 255) -> RowsFn:
    """Wrap ``on_rows`` (full-width rows of the input grid) to take rows of the model's grid:
    each input pixel takes the value of the model pixel holding its centre, and ``nodata``
    where the input itself is nodata."""
    width_m, height_m = model_grid_size(ds.width, ds.height, scale)
    cols = np.minimum(np.floor((np.arange(ds.width) + 0.5) * scale).astype(np.int64), width_m - 1)
    owner = np.minimum(np.floor((np.arange(ds.height) + 0.5) * scale).astype(np.int64),
                       height_m - 1)
    mask_reader = ResampledWindowReader(ds, bands, 1)

    def on_model_rows(y: int, rows: List[np.ndarray]) -> None:
        h = rows[0].shape[-2]
        first, end = np.searchsorted(owner, [y, y + h])
        if end <= first:
            return
        index = owner[first:end] - y
        valid = mask_reader.input_validity(Window(0, int(first), ds.width, int(end - first)))
        out = []
        for a in rows:
            fine = a[..., index[:, None], cols[None, :]]
            fine[..., ~valid] = nodata
            out.append(fine)
        on_rows(int(first), out)
    return on_model_rows


Forward = Callable[[Dict[str, Any]], Any]


def scores_to_input_grid(forward: Forward, tile: int, size: int) -> Forward:
    """Wrap ``forward`` (B×C×tile×tile scores) so it returns B×C×size×size scores."""
    matrix = interpolation_matrix(size, tile)
    cache: Dict[Any, Any] = {}

    def resized(inputs: Dict[str, Any]) -> Any:
        scores = forward(inputs)
        if size > tile and not isinstance(scores, np.ndarray):
            # enlarging, the matrix is plain bilinear interpolation (pixel centres aligned, edge
            # samples held): torch's kernel computes the same weights without the dense products
            import torch.nn.functional as F
            return F.interpolate(scores, size=(size, size), mode="bilinear", align_corners=False)
        key = (type(scores), getattr(scores, "device", None))
        r = cache.get(key)
        if r is None:
            r = matrix if isinstance(scores, np.ndarray) else _like(matrix, scores)
            cache[key] = r
        return r @ scores @ r.T
    return resized


def _like(matrix: np.ndarray, tensor: Any) -> Any:
    import torch
    return torch.as_tensor(matrix, device=tensor.device, dtype=tensor.dtype)
