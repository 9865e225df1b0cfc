"""Appearance strata: the cells of an image grouped by what they look like, for the review list.

A model trained elsewhere can be *sure and wrong* over a whole land cover (on the loop's
benchmark, water read as forest over 43 % of the scene): its uncertainty never points there,
and places spread out in space reach it only by chance.  Grouping the cells by appearance
(each band's mean and spread, k-means) needs no model at all, so it sees such an area as a
large group like any other.  Sharing the places among the groups in proportion to their area
(``allot``) and ranking by uncertainty *inside* each group is stratified uncertainty
sampling: every kind of place the scene holds is checked about as often as it covers the
scene, and the most unsure of each kind first.  Shares by the square root of the area were
measured and not adopted: they check a small group early, which pays where a rare class has a
look of its own and costs where the large groups hold the confusion (docs/benchmarks.md, stop 41).
"""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np
from ..io.rasters import data_band_indexes, open_raster
from .cells import cell_blocks, read_on_grid

STRATA = 8  # groups of a scene: enough to part its main land covers, few enough to fill
ITERATIONS = 25


def appearance_strata(image: str | Path, grid, window: Tuple[int, int, int, int],
                      shape: Tuple[int, int], cell: int, valid: np.ndarray,
                      count: int = STRATA) -> np.ndarray:
    """Each cell's appearance group (0..count-1; -1 where ``valid`` is false), from ``image``
    read over ``window`` at ``shape`` (the uncertainty raster's grid ``grid``, cut in cells of
    ``cell`` read pixels like it)."""
    with open_raster(image) as ds:
        bands = data_band_indexes(ds)
    data = read_on_grid(image, grid, window, shape, "give the image it was predicted from",
                        bands).astype(np.float32)
    features = np.concatenate([_band_features(band, cell) for band in data], -1)
    labels = np.full(valid.shape, -1, np.int64)
    if valid.any():
        labels[valid] = kmeans(features[valid], count)
    return labels


def _band_features(band: np.ndarray, cell: int) -> np.ndarray:
    """Each cell's mean and standard deviation of one band: rows × cols × 2."""
    blocks = cell_blocks(band, cell, np.nan)
    return np.stack([np.nanmean(blocks, -1), np.nanstd(blocks, -1)], -1)


def kmeans(points: np.ndarray, count: int) -> np.ndarray:
    """Groups of ``points`` (n × features, each feature standardised first) by k-means,
    seeded farthest-first from the point nearest the mean so the same scene always gives the
    same groups; at most ``count`` groups, fewer when there are fewer distinct points."""
    x = np.nan_to_num(points.astype(np.float64))
    x = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)
    centres = [x[np.argmin(((x - x.mean(0)) ** 2).sum(1))]]
    while len(centres) < count:
        far = ((x[:, None] - np.array(centres)[None]) ** 2).sum(-1).min(1)
        if far.max() <= 0:
            break  # every point already sits on a centre
        centres.append(x[np.argmax(far)])
    centres = np.array(centres)
    labels = np.zeros(len(x), np.int64)
    for _ in range(ITERATIONS):
        labels = ((x[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        moved = np.array([x[labels == k].mean(0) if (labels == k).any() else centres[k]
                          for k in range(len(centres))])
        if np.allclose(moved, centres):
            break
        centres = moved
    return labels


def allot(strata: np.ndarray, taken: np.ndarray, open_: np.ndarray) -> int:
    """The group owed the next place: the one furthest below its share of the scene's area
    among the cells ``taken`` (reviewed or listed) so far, among groups with an ``open_`` cell
    left; -1 when none is left."""
    groups = np.unique(strata[open_ & (strata >= 0)])
    if groups.size == 0:
        return -1
    area = np.array([(strata == g).sum() for g in groups], np.float64)
    share = area / (strata >= 0).sum()
    have = np.array([(taken & (strata == g)).sum() for g in groups], np.float64)
    owed = share * (have.sum() + 1) - have
    return int(groups[np.argmax(owed)])
