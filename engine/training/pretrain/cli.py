"""``python -m engine pretrain``: its options and the run that prints where the results went."""
from __future__ import annotations

import argparse
import json
from typing import Optional

from ...jobs import ProgressFn
from ..checkpoints import cancel_says_what_it_keeps
from .loop import pretrain

COMMAND = "pretrain"
HELP = "self-supervised pre-training (GLCNet) on unlabelled rasters, for 'train --init'"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``pretrain`` (they mirror :func:`pretrain`)."""
    from ...models import available
    p.add_argument("--image", action="append", required=True, dest="images",
                   help="unlabelled image (repeat for several; all with the same bands)")
    p.add_argument("--arch", default="glcnet",
                   help=f"network to pre-train (glcnet or unet; registered: "
                        f"{', '.join(available('segmentation'))})")
    p.add_argument("--out", required=True, help="pre-trained model file to write (.rsmodel)")
    p.add_argument("--epochs", type=int, default=100, help="default 100 (the paper: 400)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="windows per step and device (default 16; the paper: 256)")
    p.add_argument("--crop", type=int, default=224, help="view edge in pixels (default 224)")
    p.add_argument("--window", type=int, help="source window edge (default crop × 8/7)")
    p.add_argument("--device", default="auto")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--weight-decay", type=float, default=1e-5)
    p.add_argument("--patch-size", type=int, default=48, help="RoI edge in pixels (default 48)")
    p.add_argument("--patch-num", type=int, default=4, help="matched RoIs per window (default 4)")
    p.add_argument("--lam", type=float, default=0.5,
                   help="weight of the global loss; the local one gets 1 - lam (default 0.5)")
    p.add_argument("--temperature", type=float, default=0.5, help="NT-Xent τ (default 0.5)")
    p.add_argument("--embedding", type=int, default=64,
                   help="channels of the per-pixel embedding map (default 64)")
    p.add_argument("--samples-per-epoch", type=int,
                   help="windows per epoch (default: the non-overlapping windows of the images)")
    p.add_argument("--workers", type=int, default=1, help="data-loading processes")
    p.add_argument("--resume", help="resume from a <model>.last.ckpt checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hparams", type=json.loads, default={},
                   help='architecture hyper-parameters as JSON, e.g. \'{"depth": 18}\'')


def run(args: argparse.Namespace, progress: Optional[ProgressFn] = None) -> None:
    """Run pre-training from parsed arguments and print where the results went."""
    import inspect
    names = inspect.signature(pretrain).parameters
    with cancel_says_what_it_keeps(args.out, COMMAND):
        result = pretrain(**{k: v for k, v in vars(args).items() if k in names},
                          progress=progress)
    if result.get("rank", 0) == 0:
        print(f"wrote {result['model']} (best loss {result['best_loss']:.4f} at epoch "
              f"{result['best_epoch']} of {result['epochs_run']}, {result['seconds']:.0f} s)")
        print(f"  checkpoint {result['checkpoint']}")
        print(f"  fine-tune with: python -m engine train --arch {args.arch} --init "
              f"{result['model']} --image … --labels …")
