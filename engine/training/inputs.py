"""What a training run trains on: its scenes and label classes from the ``TrainConfig``, the
input pixels behind a window at ``--gsd``, the network's hyper-parameters, the input statistics
of a pre-trained backbone and the model card describing it all."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..io.classes import CHANGE_CLASSES
from ..io.label_colours import colours_to_values, read_colour_table, survey
from ..io.weight_layouts import pretrained_statistics
from ..jobs import InputError, Job
from .config import TrainConfig
from .data import (IMAGERY_GROUPS, LabelSpec, Scene, band_names, discover_label_classes,
                   group_bands, polygon_label_spec)
from .losses import IGNORE


def training_scenes(cfg: TrainConfig) -> List[Scene]:
    """One scene per ``--image`` with its other date, auxiliary raster and labels; the
    combination of inputs is checked first."""
    if not cfg.images:
        raise InputError("give at least one training image (--image)")
    if bool(cfg.labels) == bool(cfg.polygons):
        raise InputError("give labels either as a raster (--labels) or as polygons "
                         "(--polygons with --class-field), not both / neither")
    if cfg.labels and len(cfg.labels) != len(cfg.images):
        raise InputError(f"{len(cfg.images)} image(s) but {len(cfg.labels)} label raster(s); "
                         f"give one --labels per --image")
    if cfg.polygons and not cfg.class_field:
        raise InputError("--polygons needs --class-field (the attribute holding the class)")
    for name, extra in (("--aux", cfg.aux), ("--image2", cfg.images2)):
        if extra and len(extra) != len(cfg.images):
            raise InputError(f"give one {name} per --image ({len(cfg.images)})")
    if cfg.task == "change" and not cfg.images2:
        raise InputError("change training needs the later date of each image (--image2)")
    scenes = []
    for i, img in enumerate(cfg.images):
        inputs = {("t1" if cfg.task == "change" else "image"): img}
        if cfg.task == "change":
            inputs["t2"] = cfg.images2[i]
        if cfg.aux:
            inputs["aux"] = cfg.aux[i]
        scenes.append(Scene(inputs, labels=cfg.labels[i] if cfg.labels else None,
                            polygons=cfg.polygons, class_field=cfg.class_field,
                            bands=cfg.bands,
                            statistics_from=cfg.statistics_from[i] if cfg.statistics_from
                            else None))
    for scene in scenes if cfg.bands else ():  # a band that does not exist: say so first
        for group, path in scene.inputs.items():
            band_count(path, scene.bands_of(group))
    return scenes


def label_spec(cfg: TrainConfig, scenes: List[Scene]) -> LabelSpec:
    """The classes to learn: change / no change, the polygons' classes or the label values."""
    if cfg.task == "change":
        return ChangeLabelSpec(classes=CHANGE_CLASSES, ignore_value=cfg.ignore_value)
    if cfg.classes:  # fixed by the caller (refine: the model's classes, present or not)
        return LabelSpec(classes=[dict(c) for c in cfg.classes], ignore_value=cfg.ignore_value)
    if cfg.polygons:
        if cfg.label_colours:
            raise InputError("--label-colours reads colour-coded label rasters (--labels), not "
                             "polygons; leave it out")
        return polygon_label_spec(scenes)
    if cfg.label_colours:
        return colour_label_spec(cfg.label_colours, scenes)
    return discover_label_classes(scenes, cfg.ignore_value)


class ColourLabelSpec(LabelSpec):
    """Colour-coded labels: each pixel's RGB colour is looked up in the colour table."""

    def read_values(self, ds: Any, window: Any) -> np.ndarray:
        return colours_to_values(ds.read([1, 2, 3], window=window), self.classes)


def colour_label_spec(table: str, scenes: List[Scene]) -> ColourLabelSpec:
    """The colour table's classes (``--label-colours``), checked against the label rasters: a
    sentence when no colour matches or fewer than two classes occur; a note for the share of
    pixels whose colour is not in the table (they are not trained on)."""
    classes = read_colour_table(table)
    notes, present = [], set()
    for scene in scenes:
        known, unknown = survey(scene.labels, classes)
        present |= set(known)
        total = sum(known.values()) + sum(unknown.values())
        top = ", ".join(c for c, _ in unknown.most_common(4))
        if not known:
            raise InputError(f"none of the colours of {scene.labels} is in the colour table "
                             f"{table} (it has {top}); give the table of these labels")
        if unknown:
            notes.append(f"{Path(scene.labels).name}: {100 * sum(unknown.values()) / total:.1f} % "
                         f"of the pixels have colours outside the table ({top}); they are not "
                         f"trained on")
    if len(present) < 2:
        raise InputError(f"the labels hold {len(present)} class(es) of the colour table; "
                         f"training needs at least two")
    return ColourLabelSpec(classes=classes, notes=notes)


class ChangeLabelSpec(LabelSpec):
    """Change labels: 0 is no change, any other value (1, 255 …) is change."""

    def lut(self) -> np.ndarray:
        table = np.ones(256, dtype=np.uint8)
        table[0] = 0
        if self.ignore_value is not None and 0 <= self.ignore_value < 256:
            table[self.ignore_value] = IGNORE
        return table


def band_count(path: str, bands: Optional[List[int]] = None) -> int:
    """Number of bands trained on in the raster at ``path``: ``bands`` (``--bands``), else its
    data bands (an alpha band is not data)."""
    from ..io.rasters import open_raster
    with open_raster(path) as ds:
        return len(group_bands(ds, bands))


def band_notes(scenes: List[Scene]) -> List[str]:
    """A sentence for each imagery raster with a band flagged alpha (used as a mask, or read as
    data by ``--bands``)."""
    from ..io.rasters import alpha_note, open_raster
    notes = []
    for scene in scenes:
        for group, path in scene.inputs.items():
            if group in IMAGERY_GROUPS:
                with open_raster(path) as ds:
                    notes.append(alpha_note(ds, group_bands(ds, scene.bands_of(group))))
    return list(dict.fromkeys(n for n in notes if n))


def image_gsd(path: str) -> Optional[float]:
    """Ground sampling distance (m) of the raster at ``path``; None when it is unknown."""
    from ..io.gsd import raster_gsd
    from ..io.rasters import open_raster
    with open_raster(path) as ds:
        return raster_gsd(ds)


def training_gsd(cfg: TrainConfig, scenes: List[Scene]) -> Optional[float]:
    """Pixel size (m) of the training images: ``--input-gsd``, else their georeferencing."""
    if cfg.input_gsd is not None:
        if cfg.input_gsd <= 0:
            raise InputError(f"--input-gsd must be a positive number of metres "
                             f"(got {cfg.input_gsd})")
        return cfg.input_gsd
    return image_gsd(scenes[0].inputs[scenes[0].base])


def window_read_size(cfg: TrainConfig, scenes: List[Scene], gsd_from_init: bool = False) -> int:
    """Input pixels behind one training window: the tile, scaled when training at --gsd (or at
    the --init model's GSD, ``gsd_from_init``)."""
    if cfg.gsd is None:
        return cfg.tile
    if cfg.gsd <= 0:
        raise InputError(f"--gsd must be a positive number of metres (got {cfg.gsd})")
    native = training_gsd(cfg, scenes)
    if native is None and gsd_from_init:
        raise InputError(f"fine-tuning trains at the --init model's GSD ({cfg.gsd:g} m), but the "
                         f"training images are not georeferenced (their pixel size is unknown); "
                         f"give it with --input-gsd METRES, or train at another --gsd")
    if native is None:
        raise InputError("training at a chosen --gsd needs the images' pixel size: they are not "
                         "georeferenced; give it with --input-gsd METRES, or leave out --gsd")
    return max(8, int(round(cfg.tile * cfg.gsd / native)))


def fit_tile(cfg: TrainConfig, sizes: Sequence[Tuple[int, int]], read_size: int,
             multiple: int) -> Tuple[TrainConfig, int, Optional[str]]:
    """``cfg``, the read size and a note, with the training tile shrunk (to a multiple of
    ``multiple``) when its window would not fit in the smallest image (``sizes``: width,
    height), e.g. 256² chips fine-tuned at a base model's slightly coarser GSD."""
    smallest = min(min(w, h) for w, h in sizes)
    if read_size <= smallest:
        return cfg, read_size, None
    scale = read_size / cfg.tile  # input pixels per training pixel
    tile = int(smallest / scale) // multiple * multiple
    if tile < max(multiple, 16):
        raise InputError(f"the smallest training image is {smallest} px across, too small for "
                         f"a training window (at least {max(multiple, 16)} px at the training "
                         f"GSD); use larger images")
    read = min(smallest, max(8, int(round(tile * scale))))
    at = f" at the training GSD ({cfg.gsd:g} m)" if abs(scale - 1) > 1e-9 else ""
    note = (f"training tile {tile} px instead of {cfg.tile}: the smallest image is {smallest} px "
            f"across, which holds {tile} px{at}")
    return replace(cfg, tile=tile), read, note


def model_card(cfg: TrainConfig, scenes: List[Scene], spec: LabelSpec,
               stats: Dict[str, tuple], hparams: Dict[str, Any],
               raw_stats: Dict[str, tuple]) -> Dict[str, Any]:
    """The card of the model to write (its ``training`` record is filled in as it trains)."""
    from ..io.rasters import open_raster
    inputs = {}
    for group in scenes[0].inputs:
        path = scenes[0].inputs[group]
        bands = scenes[0].bands_of(group)
        n = band_count(path, bands)
        with open_raster(path) as ds:
            dtype, nodata = ds.dtypes[0], ds.nodata
        mean, std = stats[group]
        inputs[group] = {"bands": [{"index": i + 1, "name": nm}
                                   for i, nm in enumerate(band_names(path, n, bands))],
                         "dtype": dtype, "mean": mean, "std": std, "nodata": nodata,
                         "normalisation": cfg.normalisation if group in IMAGERY_GROUPS
                         else "dataset",
                         "raw_statistics": {"mean": raw_stats[group][0],
                                            "std": raw_stats[group][1]}}
    return {"name": Path(cfg.out).stem, "task": cfg.task, "architecture": cfg.arch,
            "hparams": hparams, "inputs": inputs, "classes": spec.classes,
            "tile_size": cfg.tile, "overlap": max(8, cfg.tile // 8) // 8 * 8,
            "gsd_m": cfg.gsd or training_gsd(cfg, scenes), "training": {}}


def network_hparams(cfg: TrainConfig, scenes: List[Scene], num_classes: int) -> Dict[str, Any]:
    """Hyper-parameters of the network to build: band counts, classes, then ``--hparams``."""
    base = scenes[0].inputs[scenes[0].base]
    hp = {"in_channels": band_count(base, scenes[0].bands), "num_classes": num_classes}
    if "aux" in scenes[0].inputs:
        hp["aux_channels"] = band_count(scenes[0].inputs["aux"])
    hp.update(cfg.hparams)
    return hp


def backbone_statistics(cfg: TrainConfig, scenes: List[Scene], stats: Dict[str, tuple],
                        normalisation: Optional[str], job: Job) -> Dict[str, tuple]:
    """The image normalisation a pre-trained backbone was trained with (8-bit data under the
    default dataset normalisation), else the data statistics unchanged."""
    from ..io.rasters import open_raster
    if not normalisation or getattr(cfg, "normalisation", None) not in (None, "dataset"):
        return stats
    out = dict(stats)
    for group in ("image", "t1", "t2"):
        if group not in stats:
            continue
        with open_raster(scenes[0].inputs[group]) as ds:
            dtype = ds.dtypes[0]
        mean, std, used = pretrained_statistics(list(stats[group][0]), list(stats[group][1]),
                                                dtype, normalisation)
        out[group] = (mean, std)
        job.log(f"{group}: {normalisation} normalisation of the backbone" if used else
                f"{group}: {dtype} data keep their own statistics (the backbone's "
                f"{normalisation} normalisation assumes 8-bit RGB)")
    return out

