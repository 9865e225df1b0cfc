"""Training data: scenes, labels (raster or polygons), spatial-block split and window sampling.

Each scene is a base raster (``image`` or ``t1``) plus optional co-registered inputs (``aux``,
``t2``: warped onto the base grid on the fly) and labels.  The base grid is cut into cells of
``tile`` pixels (the last row and column flush with the far edges, so no labelled strip is
left out); whole cells go to validation (fixed windows, no augmentation), and training
windows are drawn at random positions that never touch a validation cell, so neighbouring windows
cannot leak between the splits.  Every random draw comes from a generator seeded by
(seed, epoch, index), which makes epochs reproducible and resume exact.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import rasterio
import torch
from rasterio.enums import Resampling
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from ..io.classes import class_colour
from ..io.rasters import (WindowReader, check_overlap, data_band_indexes, open_raster,
                          same_grid, warp_to_grid)
from ..io.radiometry import BandStats, check_mode, image_statistics, pre_affine
from ..jobs import InputError
from .augment import SensorAugment, random_scale, resize_window, sensor_shift
from .losses import IGNORE

BASE_GROUPS = ("image", "t1")
IMAGERY_GROUPS = ("image", "t1", "t2")  # groups a normalisation mode applies to


@dataclass
class Scene:
    """One training area: input rasters by group name, and labels (raster or polygons)."""

    inputs: Dict[str, str]
    labels: Optional[str] = None
    polygons: Optional[str] = None
    class_field: Optional[str] = None
    bands: Optional[List[int]] = None  # --bands: the imagery bands to train on (1-based)
    # the raster whose statistics normalise the base imagery (a crop is seen as in its whole
    # image, as predict sees it); default the base raster itself
    statistics_from: Optional[str] = None

    @property
    def base(self) -> str:
        return next(g for g in self.inputs if g in BASE_GROUPS)

    def bands_of(self, group: str) -> Optional[List[int]]:
        """The bands chosen for ``group`` (None: its data bands); aux rasters keep theirs."""
        return self.bands if group in IMAGERY_GROUPS else None


def group_bands(ds: rasterio.io.DatasetReader, chosen: Optional[Sequence[int]]) -> List[int]:
    """The bands of ``ds`` a training group reads: ``chosen`` (``--bands``) or its data bands
    (a band flagged alpha is a mask: :func:`engine.io.rasters.alpha_note` says so)."""
    if not chosen:
        return data_band_indexes(ds) or [1]
    bad = [b for b in chosen if not 1 <= b <= ds.count]
    if bad:
        raise InputError(f"--bands {','.join(map(str, chosen))}: band(s) "
                         f"{', '.join(map(str, bad))} do not exist in {ds.name} ({ds.count} "
                         f"bands)")
    return list(chosen)


@dataclass
class LabelSpec:
    """How label pixels become class indexes."""

    classes: List[Dict[str, Any]]
    ignore_value: Optional[int] = None
    value_of: Dict[Any, int] = field(default_factory=dict)  # polygon field value → class value
    notes: List[str] = field(default_factory=list)  # sentences for the user about the labels

    def read_values(self, ds: rasterio.io.DatasetReader, window: Window) -> np.ndarray:
        """The label values of ``window`` of the label raster ``ds``."""
        return ds.read(1, window=window)

    def lut(self) -> np.ndarray:
        """256-entry table: raster label value → class index (IGNORE where it does not count)."""
        table = np.full(256, IGNORE, dtype=np.uint8)
        for i, c in enumerate(self.classes):
            table[int(c["value"])] = i
        if self.ignore_value is not None and 0 <= self.ignore_value < 256:
            table[self.ignore_value] = IGNORE
        return table


class SceneReader:
    """Windowed access to one scene on its base grid: raw inputs, validity and label indexes.

    ``normalisation`` (``dataset`` | ``image`` | ``percentile``) sets the per-image step that
    :meth:`pre_transform` applies to the imagery groups (aux rasters such as a DSM keep their
    absolute values).
    """

    def __init__(self, scene: Scene, spec: LabelSpec, normalisation: str = "dataset") -> None:
        self.scene, self.spec = scene, spec
        self._stack = contextlib.ExitStack()
        base = self._stack.enter_context(open_raster(scene.inputs[scene.base]))
        self.base = base
        self.width, self.height = base.width, base.height
        self.readers: Dict[str, WindowReader] = {}
        for group, path in scene.inputs.items():
            ds = base if group == scene.base else self._aligned(path, Resampling.bilinear)
            self.readers[group] = WindowReader(ds, group_bands(ds, scene.bands_of(group)))
        self._pre: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
        for group, reader in self.readers.items():
            mode = normalisation if group in IMAGERY_GROUPS else "dataset"
            stats = self._statistics(group, reader) if check_mode(mode) != "dataset" else None
            self._pre[group] = pre_affine(mode, stats, len(reader.bands))
        self._labels = self._aligned(scene.labels, Resampling.nearest) if scene.labels else None
        self._lut = spec.lut()
        if self._labels is not None and self._labels.nodata is not None:
            nd = int(self._labels.nodata)
            if 0 <= nd < 256:
                self._lut[nd] = IGNORE

    def _statistics(self, group: str, reader: WindowReader) -> BandStats:
        """Band statistics of ``group``: the scene's ``statistics_from`` raster's for the base
        imagery (same bands), else the group's own."""
        if group != self.scene.base or self.scene.statistics_from is None:
            return image_statistics(reader)
        with open_raster(self.scene.statistics_from) as whole:
            return image_statistics(WindowReader(whole, reader.bands))

    def _aligned(self, path: str, resampling: Resampling) -> rasterio.io.DatasetReader:
        ds = self._stack.enter_context(open_raster(path))
        b = self.base
        if same_grid(ds, b):
            return ds
        if ds.crs is None or b.crs is None:
            raise InputError(f"{path} is not on the grid of {self.scene.inputs[self.scene.base]} "
                             f"and one of them has no CRS; georeference both")
        check_overlap(b, ds, path)
        return self._stack.enter_context(
            warp_to_grid(ds, b.crs, b.transform, b.width, b.height, resampling))

    def pre_transform(self, group: str, pixels: np.ndarray) -> np.ndarray:
        """Raw pixels of ``group`` after the normalisation mode's per-image step."""
        a, b = self._pre[group]
        return ((pixels - a[:, None, None].astype(np.float32)) /
                b[:, None, None].astype(np.float32)).astype(np.float32)

    def read(self, x: int, y: int, size: int) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
        """Raw float32 inputs (per group) and uint8 class indexes (IGNORE = does not count)."""
        inputs, valid = {}, None
        for group, reader in self.readers.items():
            win = reader.read(x, y, size)
            inputs[group] = win.pixels
            valid = win.valid if valid is None else valid & win.valid
        labels = self._read_labels(x, y, size)
        labels[~valid] = IGNORE
        return inputs, labels

    def _read_labels(self, x: int, y: int, size: int) -> np.ndarray:
        w, h = min(size, self.width - x), min(size, self.height - y)
        out = np.full((size, size), IGNORE, dtype=np.uint8)
        if self._labels is not None:
            raw = self.spec.read_values(self._labels, Window(x, y, w, h))
            out[:h, :w] = self._lut[np.clip(raw, 0, 255).astype(np.uint8)]
            out[:h, :w][(raw < 0) | (raw > 255)] = IGNORE
        else:
            from ..io.vectors import rasterize_polygons
            from ..io.vectors import PolygonLabels
            burned = rasterize_polygons(
                self.scene.polygons, self.scene.class_field,
                PolygonLabels(classes=self.spec.classes, value_of=self.spec.value_of),
                self.base.crs, window_transform(Window(x, y, w, h), self.base.transform), w, h,
                fill=255)
            out[:h, :w] = self._lut[burned]
        return out

    def valid_fraction(self, x: int, y: int, size: int) -> float:
        """Share of counted label pixels in a window (used to skip empty cells)."""
        return float((self.read(x, y, size)[1] != IGNORE).mean())

    def close(self) -> None:
        self._stack.close()


# ---- classes --------------------------------------------------------------------------------

def discover_label_classes(scenes: Sequence[Scene], ignore_value: Optional[int],
                           class_names: Optional[Dict[int, str]] = None) -> LabelSpec:
    """Classes present in the label rasters (streamed by blocks), names from tags when present."""
    counts = np.zeros(256, dtype=np.int64)
    names: Dict[int, str] = dict(class_names or {})
    colours: Dict[int, List[int]] = {}
    for scene in scenes:
        with open_raster(scene.labels) as ds:
            if ds.count != 1 or not np.issubdtype(np.dtype(ds.dtypes[0]), np.integer):
                raise InputError(f"label raster {scene.labels} must have one integer band "
                                 f"(class values); it has {ds.count} band(s) of {ds.dtypes[0]}"
                                 + ("; for colour-coded labels (a colour per class) give "
                                    "--label-colours isprs or a colour table file"
                                    if ds.count >= 3 else ""))
            for _, win in ds.block_windows(1):
                block = ds.read(1, window=win)
                block = block[(block >= 0) & (block < 255)]
                counts += np.bincount(block.astype(np.int64).ravel(), minlength=256)[:256]
            nd = ds.nodata
            if nd is not None and 0 <= nd < 256:
                counts[int(nd)] = 0
            for k, v in ds.tags(1).items():
                if k.startswith("CLASS_") and k[6:].isdigit():
                    names.setdefault(int(k[6:]), v)
            with contextlib.suppress(ValueError):
                for v, rgba in ds.colormap(1).items():
                    colours[int(v)] = list(rgba[:3])
    if ignore_value is not None and 0 <= ignore_value < 256:
        counts[ignore_value] = 0
    present = [int(v) for v in np.nonzero(counts)[0]]
    if len(present) < 2:
        raise InputError(f"the labels contain {len(present)} class(es) ({present}) besides the "
                         f"ignore/nodata value; training needs at least two classes")
    classes = [{"value": v, "name": names.get(v, f"class {v}"),
                "color": colours.get(v, class_colour(i))} for i, v in enumerate(present)]
    return LabelSpec(classes=classes, ignore_value=ignore_value)


def polygon_label_spec(scenes: Sequence[Scene]) -> LabelSpec:
    """Classes from the polygons' class field (same field in every scene)."""
    from ..io.vectors import read_polygon_labels
    first = read_polygon_labels(scenes[0].polygons, scenes[0].class_field)
    return LabelSpec(classes=first.classes, value_of=first.value_of)


# ---- split and sampling -----------------------------------------------------------------------

@dataclass
class Cell:
    """A tile-sized cell of a scene's base grid and its counted label pixels per class."""

    scene: int
    x: int
    y: int
    class_counts: np.ndarray

    @property
    def labelled(self) -> int:
        return int(self.class_counts.sum())


def cell_starts(length: int, tile: int) -> List[int]:
    """Cell offsets along one axis: a grid of ``tile``, and one more cell flush with the far
    edge when ``length`` is not a multiple of it (labels in that strip, e.g. corrections near
    the edge of refine's window, would otherwise never train)."""
    starts = list(range(0, length - tile + 1, tile))
    if length % tile:
        starts.append(length - tile)
    return starts


def scan_cells(readers: Sequence[SceneReader], tile: int, num_classes: int) -> List[Cell]:
    """The cells of every scene (:func:`cell_starts`) with their label counts (cells with none
    are dropped)."""
    cells = []
    for s, r in enumerate(readers):
        if r.width < tile or r.height < tile:
            raise InputError(f"{r.scene.inputs[r.scene.base]} is {r.width}×{r.height} px, smaller "
                             f"than the training tile {tile}; use --tile "
                             f"{max(16, min(r.width, r.height) // 16 * 16)} or smaller")
        for y in cell_starts(r.height, tile):
            for x in cell_starts(r.width, tile):
                lab = r.read(x, y, tile)[1]
                counts = np.bincount(lab[lab != IGNORE].ravel(), minlength=num_classes)[:num_classes]
                if counts.sum():
                    cells.append(Cell(s, x, y, counts))
    if not cells:
        raise InputError("no labelled pixels overlap the image(s): the labels are outside the "
                         "image, all nodata, or all equal to the ignore value")
    return cells


def split_cells(cells: Sequence[Cell], val_fraction: float, seed: int) -> Tuple[List[Cell], List[Cell]]:
    """Whole cells to validation (seeded); at least one cell stays for training."""
    if not 0 <= val_fraction < 1:
        raise InputError(f"validation fraction must be in [0, 1) (got {val_fraction})")
    order = np.random.default_rng(seed).permutation(len(cells))
    n_val = int(round(val_fraction * len(cells)))
    if val_fraction > 0:
        n_val = max(1, n_val)
    n_val = min(n_val, len(cells) - 1)
    val = [cells[i] for i in sorted(order[:n_val])]
    train = [cells[i] for i in sorted(order[n_val:])]
    return train, val


def cell_weights(cells: Sequence[Cell], balanced: bool) -> np.ndarray:
    """Sampling probabilities of training cells: by labelled pixels, or favouring rare classes."""
    counts = np.stack([c.class_counts for c in cells]).astype(np.float64)
    if balanced:
        freq = counts.sum(0)
        inv = np.where(freq > 0, 1.0 / np.maximum(freq, 1), 0.0)
        w = counts @ inv
    else:
        w = counts.sum(1)
    return w / w.sum()


def d4(arrays: List[np.ndarray], k: int, flip: bool) -> List[np.ndarray]:
    """Apply the same rotation by k×90° (and optional horizontal flip) to every array (…×H×W)."""
    out = []
    for a in arrays:
        a = np.rot90(a, k, axes=(-2, -1))
        if flip:
            a = a[..., ::-1]
        out.append(np.ascontiguousarray(a))
    return out


class WindowDataset(torch.utils.data.Dataset):
    """Training windows (random, augmented) or validation windows (fixed cells)."""

    def __init__(self, scenes: Sequence[Scene], spec: LabelSpec, cells: Sequence[Cell],
                 tile: int, stats: Dict[str, Tuple[List[float], List[float]]], *, train: bool,
                 length: int = 0, seed: int = 0, val_cells: Sequence[Cell] = (),
                 balanced: bool = False, augment: bool = True, date_swap: bool = False,
                 color_jitter: float = 0.0, read_size: Optional[int] = None,
                 normalisation: str = "dataset", sensor: Optional[SensorAugment] = None) -> None:
        self.scenes, self.spec, self.cells, self.tile = list(scenes), spec, list(cells), tile
        self.read_size = read_size or tile  # input pixels behind one window (training GSD)
        self.normalisation, self.sensor = normalisation, sensor
        self.stats, self.train, self.seed = stats, train, seed
        self.length = length if train else len(self.cells)
        self.val_cells = list(val_cells)
        self.weights = cell_weights(self.cells, balanced) if train else None
        self.augment, self.date_swap, self.color_jitter = augment, date_swap, color_jitter
        self.epoch, self.sensor_on = 0, sensor is not None
        self._readers: Optional[List[SceneReader]] = None

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int, sensor: bool = True) -> None:
        """Draw the windows of ``epoch``; ``sensor=False`` leaves out the sensor augmentation
        (the in-domain epochs at the end of a run)."""
        self.epoch, self.sensor_on = epoch, sensor and self.sensor is not None

    def _reader(self, i: int) -> SceneReader:
        if self._readers is None:  # opened lazily: each DataLoader worker gets its own handles
            self._readers = [SceneReader(s, self.spec, self.normalisation) for s in self.scenes]
        return self._readers[i]

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        if not self.train:
            c = self.cells[index]
            inputs, labels = self._read(c.scene, c.x, c.y, self.read_size)
            return self._tensors(inputs, labels)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        plan = self.sensor if self.sensor_on else None
        # Drawn whatever the plan, so runs with and without the augmentation (or its in-domain
        # epochs) pick the same windows and flips: skipping these draws once gave an unaugmented
        # run other windows, and that luck read as the augmentation's cost (issue 27).
        u_zoom, u_shift = rng.random(), rng.random()
        zoom = plan is not None and u_zoom < plan.scale_p
        shift = plan is not None and u_shift < plan.shift_p
        for _ in range(20):
            c = self.cells[rng.choice(len(self.cells), p=self.weights)]
            r = self._reader(c.scene)
            size = self.read_size
            if zoom:  # another GSD: zoom the window
                size = int(np.clip(round(size * random_scale(rng)), 8, min(r.width, r.height)))
            x, y = self._jitter(c, rng, size)
            inputs, labels = self._read(c.scene, x, y, size)
            if (labels != IGNORE).any():
                break
        if self.augment:
            keys = list(inputs)
            arrays = d4([inputs[k] for k in keys] + [labels], int(rng.integers(4)),
                        bool(rng.integers(2)))
            inputs, labels = dict(zip(keys, arrays[:-1])), arrays[-1]
        if self.color_jitter > 0:
            inputs = {k: self._jitter_colours(k, a, rng) for k, a in inputs.items()}
        if shift:  # each date its own sensor
            inputs = {k: sensor_shift(a, *self.stats[k], rng, plan.shift)
                      if k in IMAGERY_GROUPS else a for k, a in inputs.items()}
        batch = self._tensors(inputs, labels)
        if self.date_swap and "t2" in batch and rng.random() < 0.5:
            batch["t1"], batch["t2"] = batch["t2"], batch["t1"]
        return batch

    def _read(self, scene: int, x: int, y: int, size: int
              ) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
        """Inputs after the per-image normalisation step and labels, resized to the tile."""
        r = self._reader(scene)
        raw, labels = r.read(x, y, size)
        inputs = {}
        for k, a in raw.items():
            a, lab = resize_window(a, labels, self.tile)
            inputs[k] = r.pre_transform(k, a)
        return inputs, lab

    def _jitter(self, c: Cell, rng: np.random.Generator,
                size: Optional[int] = None) -> Tuple[int, int]:
        """A random window of ``size`` pixels (default: a cell's) around cell ``c`` that stays in
        the raster and off validation cells."""
        r = self._reader(c.scene)
        t, cell = size or self.read_size, self.read_size
        for _ in range(10):
            x = int(np.clip(c.x + rng.integers(-t // 2, t // 2 + 1), 0, r.width - t))
            y = int(np.clip(c.y + rng.integers(-t // 2, t // 2 + 1), 0, r.height - t))
            if not any(v.scene == c.scene and x < v.x + cell and v.x < x + t
                       and y < v.y + cell and v.y < y + t for v in self.val_cells):
                return x, y
        return int(min(c.x, r.width - t)), int(min(c.y, r.height - t))

    def _jitter_colours(self, group: str, a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Per-band random gain and offset (offset in units of the band's std), drawn anew for
        every input group, so each date gets its own radiometry: models learn to ignore
        illumination and sensor differences instead of reporting them as change."""
        j = self.color_jitter
        mean, std = (np.asarray(v, np.float32)[:, None, None] for v in self.stats[group])
        gain = 1 + rng.uniform(-j, j, (a.shape[0], 1, 1)).astype(np.float32)
        offset = rng.uniform(-j, j, (a.shape[0], 1, 1)).astype(np.float32) * std
        return (a - mean) * gain + mean + offset

    def _tensors(self, inputs: Dict[str, np.ndarray], labels: np.ndarray) -> Dict[str, torch.Tensor]:
        out = {}
        valid = labels != IGNORE
        for k, a in inputs.items():
            mean, std = self.stats[k]
            m = np.asarray(mean, np.float32)[:, None, None]
            s = np.asarray(std, np.float32)[:, None, None]
            out[k] = torch.from_numpy(((a - m) / s).astype(np.float32))
        out["target"] = torch.from_numpy(labels.astype(np.int64))
        out["valid"] = torch.from_numpy(valid)
        return out


def batch_to(batch: Dict[str, torch.Tensor], device: torch.device) -> Dict[str, torch.Tensor]:
    """A :class:`WindowDataset` batch on ``device``."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def network_inputs(batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The network's keyword inputs of a batch: everything but the labels and their mask."""
    return {k: v for k, v in batch.items() if k not in ("target", "valid")}


def band_statistics(readers: Sequence[SceneReader], cells: Sequence[Cell], tile: int,
                    seed: int, max_cells: int = 48,
                    raw: bool = False) -> Dict[str, Tuple[List[float], List[float]]]:
    """Per-band mean and std of each input group over valid pixels of (up to) ``max_cells``
    training cells: the normalisation stored in the model card (after each scene's per-image
    step; ``raw``: of the raw pixels, the training summary the domain guard compares with)."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(cells), size=min(max_cells, len(cells)), replace=False)
    sums: Dict[str, np.ndarray] = {}
    sq: Dict[str, np.ndarray] = {}
    n = 0
    for i in pick:
        c = cells[i]
        r = readers[c.scene]
        valid = None
        raw_px = {}
        for g, reader in r.readers.items():
            win = reader.read(c.x, c.y, tile)
            raw_px[g] = win.pixels if raw else r.pre_transform(g, win.pixels)
            valid = win.valid if valid is None else valid & win.valid
        for g, px in raw_px.items():
            v = px[:, valid].astype(np.float64)
            sums[g] = sums.get(g, 0) + v.sum(1)
            sq[g] = sq.get(g, 0) + (v ** 2).sum(1)
        n += int(valid.sum())
    if n == 0:
        raise InputError("every training window is nodata; check the image's nodata value")
    stats = {}
    for g in sums:
        mean = sums[g] / n
        std = np.sqrt(np.maximum(sq[g] / n - mean ** 2, 0))
        stats[g] = ([float(m) for m in mean], [float(max(s, 1e-6)) for s in std])
    return stats


def band_names(path: str, count: int, bands: Optional[Sequence[int]] = None) -> List[str]:
    """Band names from the raster's descriptions (of ``bands``, default its data bands), or
    R,G,B(,NIR)-style defaults."""
    from ..formats.card import DEFAULT_BAND_NAMES
    with open_raster(path) as ds:
        desc = [ds.descriptions[i - 1] for i in group_bands(ds, bands)]
    if all(desc) and len(desc) == count:
        return list(desc)
    return list(DEFAULT_BAND_NAMES.get(count, [f"B{i}" for i in range(1, count + 1)]))


def describe_scene(scene: Scene) -> str:
    """A short JSON-able description of a scene for the training summary."""
    return json.dumps({k: Path(v).name for k, v in scene.inputs.items()} |
                      {"labels": Path(scene.labels or scene.polygons or "").name})
