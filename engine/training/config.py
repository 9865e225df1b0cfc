"""What a training run is asked for (``TrainConfig``, mirroring the CLI) and the
hyper-parameters in force: the user's, else the architecture's ``RECIPE``, else the defaults;
with the optimiser they make."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch

from ..jobs import InputError
from ..models import architecture
from .augment import SensorAugment
from .encoder import split_groups
from .schedule import fit_to_run


@dataclass
class TrainConfig:
    """Everything ``train`` needs; mirrors the CLI."""

    out: str
    images: List[str]
    task: str = "segmentation"
    arch: Optional[str] = None  # default: the --init model's, else DEFAULT_ARCHITECTURES[task]
    aux: List[str] = field(default_factory=list)
    images2: List[str] = field(default_factory=list)
    bands: Optional[List[int]] = None  # imagery bands to train on (1-based); default its data bands
    # per image, the raster whose statistics normalise it (refine: a crop as its whole image)
    statistics_from: List[str] = field(default_factory=list)
    labels: List[str] = field(default_factory=list)
    label_colours: Optional[str] = None  # colour-coded labels: "isprs" or a colour table file
    polygons: Optional[str] = None
    class_field: Optional[str] = None
    ignore_value: Optional[int] = None
    classes: Optional[List[Dict[str, Any]]] = None  # the classes to learn; default: the labels'
    epochs: int = 20
    batch_size: int = 8
    tile: int = 256
    lr: Optional[float] = None
    weight_decay: Optional[float] = None
    optimizer: Optional[str] = None
    schedule: Optional[str] = None
    warmup_steps: Optional[int] = None
    val_fraction: float = 0.2
    patience: int = 10
    grad_clip: Optional[float] = None
    loss: Optional[str] = None
    aux_weight: Optional[float] = None
    balanced: Optional[bool] = None  # class-balanced windows; default BALANCED_BY_TASK[task]
    color_jitter: float = 0.0
    date_swap: Optional[bool] = None
    samples_per_epoch: Optional[int] = None
    time_budget_s: Optional[float] = None
    workers: int = 0
    device: str = "auto"
    init: Optional[str] = None
    init_head: str = "keep"
    normalisation: Optional[str] = None  # default: the --init model's, else DEFAULT_NORMALISATION
    sensor_augment: bool = True
    scale_augment_p: Optional[float] = None  # share of windows zoomed; default SENSOR_AUGMENT's
    sensor_augment_p: Optional[float] = None  # share of windows radiometrically shifted
    sensor_augment_share: Optional[float] = None  # share of the epochs augmented (then in-domain)
    gsd: Optional[float] = None  # train at this GSD (m); default: the images' own (or --init's)
    input_gsd: Optional[float] = None  # pixel size (m) of images without georeferencing
    backbone_weights: Optional[str] = None
    encoder_lr_scale: Optional[float] = None
    freeze_encoder_epochs: Optional[int] = None  # default: a third of the epochs with --init
    resume: Optional[str] = None
    seed: int = 0
    hparams: Dict[str, Any] = field(default_factory=dict)


# Used where neither the user nor the architecture's RECIPE sets a value.
DEFAULT_NORMALISATION = "image"  # transfers best to other sensors (docs/benchmarks.md)
# Sensor-shift augmentation where the user gives no shares: another sensor's radiometry in
# every window, no random zoom: zooming cost in-domain F1 and is not needed for another GSD,
# which inference handles by reading at the model's GSD (--gsd auto). LEVIR native / shifted F1
# 0.453 / 0.544 against 0.254 / 0.365 with the zoom too (docs/benchmarks.md, issue 27).
SENSOR_AUGMENT = SensorAugment(scale_p=0.0, shift_p=1.0, share=1.0)
DEFAULT_ARCHITECTURES = {"segmentation": "unet", "change": "fcsiamdiff"}
# Windows drawn by rare classes by default for segmentation: with the sensor-shift augmentation
# it gained 0.027 mIoU in-domain on ISPRS Potsdam, Vaihingen and LoveDA over three seeds each
# (8 of 9 runs) and put the mean above training without the augmentation (docs/benchmarks.md,
# issue 27 g). Change detection is not measured with it, so it keeps uniform windows.
BALANCED_BY_TASK = {"segmentation": True, "change": False}
FINETUNE_FREEZE_SHARE = 3  # with --init the encoder is frozen for epochs // 3
DEFAULTS = {"lr": 1e-3, "weight_decay": 1e-4, "schedule": "poly", "grad_clip": 1.0,
            "aux_weight": 0.2, "date_swap": True, "optimizer": "adamw"}
OPTIMIZERS = ("adamw", "adam", "sgd")


def _architecture_module(arch: str) -> Any:
    import sys
    return sys.modules[architecture(arch).builder.__module__]


def recipe_of(arch: str) -> Dict[str, Any]:
    """The training recipe an architecture module publishes as ``RECIPE`` (may be empty)."""
    return dict(getattr(_architecture_module(arch), "RECIPE", {}))


def balanced_sampling(cfg: TrainConfig) -> bool:
    """Whether training windows are drawn by rare classes: the user's choice, else the
    task's default."""
    return cfg.balanced if cfg.balanced is not None else BALANCED_BY_TASK[cfg.task]


def architecture_name(cfg: TrainConfig) -> str:
    """The architecture a run trains: the given one, else the task's default (a fine-tune's
    comes from its --init model: :func:`engine.training.loop.network_of_run`)."""
    return cfg.arch or DEFAULT_ARCHITECTURES[cfg.task]


def resolve_recipe(cfg: TrainConfig, steps_per_epoch: int) -> Dict[str, Any]:
    """Hyper-parameters in force: the user's, else the architecture's recipe, else defaults."""
    recipe = recipe_of(architecture_name(cfg))
    out = {}
    for key, default in DEFAULTS.items():
        value = getattr(cfg, key)
        out[key] = value if value is not None else recipe.get(key, default)
    out["loss"] = cfg.loss or recipe.get("loss") or ("bce_dice" if cfg.task == "change" else "ce")
    lengths = fit_to_run(recipe, steps_per_epoch, cfg.epochs, cfg.patience, cfg.warmup_steps)
    out["warmup_steps"] = lengths.warmup_steps
    out["warmup_start"] = recipe.get("warmup_start_lr", 0.0) / out["lr"] if out["lr"] else 0.0
    out["momentum"] = recipe.get("momentum", 0.9)
    out["betas"] = tuple(recipe.get("betas", (0.9, 0.999)))
    out["plateau_factor"] = recipe.get("plateau_factor", 0.1)
    out["plateau_patience"] = lengths.plateau_patience
    out["step_every"] = lengths.step_every
    out["step_gamma"] = recipe.get("lr_step_gamma", 0.1)
    # a published pre-trained encoder moves 10× slower than the new decoder unless told otherwise
    out["encoder_lr_scale"] = (cfg.encoder_lr_scale if cfg.encoder_lr_scale is not None
                               else 0.1 if cfg.backbone_weights else 1.0)
    out["freeze_encoder_epochs"] = freeze_epochs(cfg, cfg.epochs)
    return out


def sensor_plan(cfg: TrainConfig) -> Optional[SensorAugment]:
    """The sensor-shift augmentation in force (None with --no-sensor-augment)."""
    if not cfg.sensor_augment:
        return None
    values = {"scale_p": cfg.scale_augment_p, "shift_p": cfg.sensor_augment_p,
              "share": cfg.sensor_augment_share}
    for key, value in values.items():
        if value is not None and not 0.0 <= value <= 1.0:
            flag = {"scale_p": "--scale-augment-p", "shift_p": "--sensor-augment-p",
                    "share": "--sensor-augment-share"}[key]
            raise InputError(f"{flag} must be between 0 and 1 (got {value}); it is a share")
    return SensorAugment(**{k: v if v is not None else getattr(SENSOR_AUGMENT, k)
                            for k, v in values.items()})


def freeze_epochs(cfg: TrainConfig, epochs: int) -> int:
    """Epochs the encoder stays fixed in a run of ``epochs`` (the time budget may shorten it):
    the user's number, else a third with --init (+0.04 F1 from one labelled pair, +0.006 from
    three: docs/benchmarks.md, Transfer), else none."""
    freeze = cfg.freeze_encoder_epochs
    if freeze is None:
        freeze = epochs // FINETUNE_FREEZE_SHARE if cfg.init else 0
    return max(0, int(freeze))


def make_optimiser(net: torch.nn.Module, hp: Dict[str, Any],
                   arch: Optional[str] = None) -> torch.optim.Optimizer:
    """AdamW (default), Adam or SGD with momentum, as the recipe or the user asks.

    An architecture module's ``param_groups(net, weight_decay)`` (e.g. no decay on norms and
    biases) is used when ``arch`` publishes one; otherwise every parameter decays alike.
    """
    lr, wd = hp["lr"], hp["weight_decay"]
    groups = getattr(_architecture_module(arch), "param_groups", None) if arch else None
    params = list(groups(net, wd)) if groups else [{"params": list(net.parameters())}]
    prefixes = architecture(arch).encoder if arch else ()
    if prefixes and (hp.get("encoder_lr_scale", 1.0) != 1.0 or hp.get("freeze_encoder_epochs")):
        params = split_groups(net, params, prefixes, lr, hp.get("encoder_lr_scale", 1.0))
    kind = hp["optimizer"]
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, betas=hp["betas"])
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, betas=hp["betas"])
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=hp["momentum"])
    raise InputError(f"unknown optimizer '{kind}'; use one of {', '.join(OPTIMIZERS)}")

