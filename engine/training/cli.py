"""``python -m engine train`` options."""
from __future__ import annotations

import argparse
import json

from ..formats.overrides import comma_numbers
from ..models import available
from .losses import LOSSES
from .schedule import SCHEDULES

COMMAND = "train"
HELP = "train a model from rasters and label rasters or polygons"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``train`` (they mirror ``engine.train``'s TrainConfig)."""
    p.add_argument("--task", choices=("segmentation", "change"), default="segmentation")
    p.add_argument("--arch", help=f"one of {', '.join(available())} (default: the --init "
                   f"model's, else unet for segmentation and fcsiamdiff for change)")
    p.add_argument("--image", action="append", required=True, dest="images",
                   help="training image (repeat for several; the 'before' date for change)")
    p.add_argument("--image2", action="append", default=[], dest="images2",
                   help="the 'after' date of each --image (change)")
    p.add_argument("--bands", type=comma_numbers(int, "bands", "1,2,3,4"), help="bands of every image to train on, e.g. 1,2,3,4 "
                   "(default: its data bands; a band flagged alpha is a mask unless chosen)")
    p.add_argument("--aux", action="append", default=[], help="auxiliary raster per --image")
    p.add_argument("--labels", action="append", default=[],
                   help="label raster per --image (class values)")
    p.add_argument("--label-colours", metavar="isprs|FILE",
                   help="the --labels are colour-coded (RGB, a colour per class): isprs, or a "
                        "table file of 'R,G,B,name' lines; the table goes into the model card")
    p.add_argument("--polygons", help="labelled polygons (GeoPackage, Shapefile …)")
    p.add_argument("--class-field", help="attribute of --polygons holding the class")
    p.add_argument("--ignore-value", type=int, help="label value that never counts")
    p.add_argument("--out", required=True, help="model file to write (.rsmodel)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--lr", type=float, help="learning rate (default: the architecture's "
                   "recipe, else 1e-3)")
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay (default: recipe, else 1e-4)")
    p.add_argument("--optimizer", choices=("adamw", "adam", "sgd"),
                   help="default: the architecture's recipe, else adamw")
    p.add_argument("--schedule", choices=SCHEDULES, help="after warm-up (default: recipe, else poly)")
    p.add_argument("--warmup-steps", type=int, help="linear warm-up steps (default: one epoch)")
    p.add_argument("--grad-clip", type=float, help="gradient norm clip (default: recipe, else 1.0)")
    p.add_argument("--aux-weight", type=float, help="weight of auxiliary outputs (default 0.2)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of the labelled cells held out to pick the best epoch (0: none; "
                        "the last epoch is kept)")
    p.add_argument("--patience", type=int, default=10, help="early-stopping patience (epochs)")
    p.add_argument("--loss", choices=LOSSES, help="default: the recipe's, else ce (segmentation) "
                   "or bce_dice (change)")
    p.add_argument("--balanced", action=argparse.BooleanOptionalAction, default=None,
                   help="draw training windows by rare classes (default: on for segmentation, "
                        "off for change)")
    p.add_argument("--color-jitter", type=float, default=0.0, metavar="J",
                   help="random per-band gain 1±J and offset ±J·std, per date (e.g. 0.2)")
    p.add_argument("--date-swap", action=argparse.BooleanOptionalAction, default=None,
                   help="randomly swap the dates while training change models (default: on)")
    p.add_argument("--samples-per-epoch", type=int)
    p.add_argument("--time-budget", type=float, dest="time_budget_s", metavar="SECONDS",
                   help="fit the epochs into this training time (fewer, shorter epochs when "
                        "the first steps show they would not fit); checked after every step, "
                        "the best model is kept")
    p.add_argument("--workers", type=int, default=1, help="data-loading processes")
    p.add_argument("--device", default="auto")
    p.add_argument("--init", help="fine-tune from this model file (matching layers load; its "
                                  "normalisation and GSD become the defaults, LR x0.3)")
    p.add_argument("--init-head", choices=("keep", "new"), default="keep",
                   help="'new' re-initialises the classifier so the classes may differ from "
                        "the --init model's")
    p.add_argument("--normalisation", choices=("dataset", "image", "percentile"),
                   help="per-image step before standardising: image (default: each image's own "
                        "band statistics), percentile (2-98 %% stretch) or dataset (none)")
    p.add_argument("--sensor-augment", action=argparse.BooleanOptionalAction, default=True,
                   help="another sensor's blur, noise, gain and gamma, per date (default on)")
    p.add_argument("--scale-augment-p", type=float, metavar="P",
                   help="share of the windows also zoomed 0.5-2x to another GSD (default 0: "
                        "--gsd auto handles another GSD; 1 = the earlier default)")
    p.add_argument("--sensor-augment-p", type=float, metavar="P",
                   help="share of the windows given another sensor's radiometry (default 1)")
    p.add_argument("--sensor-augment-share", type=float, metavar="S",
                   help="share of the epochs with sensor augmentation; the rest train on the "
                        "imagery as it is (default 1)")
    p.add_argument("--gsd", type=float, metavar="METRES",
                   help="train at this ground sampling distance (windows are resampled)")
    p.add_argument("--input-gsd", type=float, metavar="METRES",
                   help="pixel size of training images without georeferencing (e.g. PNG pairs)")
    p.add_argument("--backbone-weights", metavar="FILE",
                   help="published pre-trained encoder weights (ResNet torchvision/timm, "
                        "R50+ViT-B_16.npz, DINOv2), recognised by their key layout")
    p.add_argument("--encoder-lr-scale", type=float, metavar="S",
                   help="encoder LR = S × LR (default 0.1 with --backbone-weights, else 1)")
    p.add_argument("--freeze-encoder-epochs", type=int, metavar="N",
                   help="keep the encoder fixed for the first N epochs (default: a third of "
                        "the epochs with --init, else 0)")
    p.add_argument("--resume", help="resume from a <model>.last.ckpt checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hparams", type=json.loads, default={},
                   help='architecture hyper-parameters as JSON, e.g. \'{"base": 32}\'')


def run(args: argparse.Namespace, progress=None) -> None:
    """Run training from parsed arguments and print where the results went."""
    from .checkpoints import cancel_says_what_it_keeps
    from .loop import TrainConfig, train
    fields = TrainConfig.__dataclass_fields__
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    with cancel_says_what_it_keeps(cfg.out, COMMAND):
        result = train(cfg, progress=progress)
    if result.get("rank", 0) == 0:
        print(f"wrote {result['model']} (best {result['best_metric']:.4f} after "
              f"{result['epochs_run']} epoch(s), {result['seconds']:.0f} s)")
        for key in ("checkpoint", "history", "curves"):
            if result.get(key):
                print(f"  {key:10s} {result[key]}")
