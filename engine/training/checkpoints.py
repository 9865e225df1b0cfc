"""What a run keeps on disk while it trains: the last state as a checkpoint, written atomically
(the previous one survives a crash or a full disk) and loaded with ``torch.load(weights_only=True)``
so a checkpoint can never run code; what ``train`` puts in it and takes back on resume; and the
best model so far; and what a cancelled run says it kept.  torch and the model-file writer
load only inside the functions that need them, so the rest is free for the plugin to use."""
from __future__ import annotations

import contextlib
import errno
import functools
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, NamedTuple, Optional, TypeVar

from ..jobs import Cancelled, InputError, ModelFileError, OutputError, atomic_output

if TYPE_CHECKING:
    import torch

    from .schedule import LRSchedule

T = TypeVar("T")

TRAIN_FORMAT = "rs_seg.checkpoint"
PRETRAIN_FORMAT = "rs_seg.pretrain_checkpoint"
_RESUME_HINT = {TRAIN_FORMAT: "resume it with 'train --resume'",
                PRETRAIN_FORMAT: "resume it with 'pretrain --resume'"}


def checkpoint_path(out: str | Path) -> Path:
    """Where the last training state of model ``out`` is kept."""
    return Path(str(out) + ".last.ckpt")


def kept_after_cancel(out: str | Path, since: float, command: str) -> Optional[str]:
    """What a cancelled ``command`` (train, pretrain) of model ``out`` left on purpose, as a
    sentence: the best model of its finished epochs and the checkpoint ``--resume`` goes on
    from.  None when no epoch finished since ``since`` (a ``time.time()``): nothing was kept."""
    ckpt = checkpoint_path(out)
    try:
        if ckpt.stat().st_mtime < since:  # a checkpoint of an earlier run
            return None
    except FileNotFoundError:
        return None
    return (f"{out} holds the best model of the finished epochs; "
            f"'{command} --resume {ckpt}' goes on from the last one")


@contextlib.contextmanager
def cancel_says_what_it_keeps(out: str | Path, command: str) -> Iterator[None]:
    """Turn a cancel (or Ctrl-C) of the run in the block into a :class:`Cancelled` that says
    what it kept (:func:`kept_after_cancel`), so a front-end does not report "no output"
    while the best model of the finished epochs is there."""
    since = time.time()
    try:
        yield
    except (Cancelled, KeyboardInterrupt):
        kept = kept_after_cancel(out, since, command)
        if kept is None:
            raise
        raise Cancelled(kept=kept) from None


def saying_what_a_cancel_keeps(fn: Callable[..., T], out: str | Path,
                               command: str) -> Callable[..., T]:
    """``fn`` (train, pretrain) run under :func:`cancel_says_what_it_keeps`, for a front-end
    that calls the engine function itself (Processing)."""
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> T:
        with cancel_says_what_it_keeps(out, command):
            return fn(*args, **kwargs)
    return run


def save_checkpoint(path: Path, state: Dict[str, Any]) -> None:
    """Write ``state`` atomically; a failure leaves the previous checkpoint intact."""
    import torch
    try:
        with atomic_output(path) as tmp:
            torch.save(state, tmp)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutputError(f"disk full while writing {path}; the previous checkpoint is "
                              f"intact. Free some space and resume with --resume {path}") from None
        raise OutputError(f"could not write {path} ({exc}); the previous checkpoint is intact") \
            from None


def load_checkpoint(path: str | Path, expected: str = TRAIN_FORMAT) -> Dict[str, Any]:
    """Load a checkpoint of kind ``expected`` without executing code."""
    import torch
    p = Path(path)
    if not p.is_file():
        raise InputError(f"checkpoint {p} does not exist; check the --resume path")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise ModelFileError(f"{p} is not a readable RS Seg checkpoint "
                             f"({str(exc).splitlines()[0]})") from None
    kind = state.get("format") if isinstance(state, dict) else None
    if kind != expected:
        other = f"; it is a different kind of checkpoint: {_RESUME_HINT[kind]}" \
            if kind in _RESUME_HINT else ""
        raise ModelFileError(f"{p} is not an RS Seg {'pre-' if expected == PRETRAIN_FORMAT else ''}"
                             f"training checkpoint{other}")
    return state


def save_train_state(path: Path, card: Dict[str, Any], net: torch.nn.Module,
                     optimiser: torch.optim.Optimizer, scheduler: LRSchedule,
                     scaler: torch.amp.GradScaler, epoch: int, history: List[Dict[str, Any]],
                     best: float, bad_epochs: int, config: Dict[str, Any]) -> None:
    """Write the state of ``train`` after ``epoch`` epochs: all an exact resume needs."""
    import torch
    save_checkpoint(path, {
        "format": TRAIN_FORMAT, "card": json.dumps(card), "model": net.state_dict(),
        "optimizer": optimiser.state_dict(), "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "epoch": epoch, "history": json.dumps(history), "best": best,
        "bad_epochs": bad_epochs, "torch_rng": torch.get_rng_state(),
        "config": json.dumps(config)})


class Resumed(NamedTuple):
    """Where a resumed ``train`` goes on from."""

    history: List[Dict[str, Any]]
    best: float
    bad_epochs: int
    epoch: int  # epochs done


def restore_train_state(state: Dict[str, Any], net: torch.nn.Module,
                        optimiser: torch.optim.Optimizer, scheduler: LRSchedule,
                        scaler: torch.amp.GradScaler) -> Resumed:
    """Load a ``train`` checkpoint into the run's network, optimiser, schedule, scaler and
    torch's random state; returns the history and counters to go on with."""
    import torch
    net.load_state_dict(state["model"])
    optimiser.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"])
    return Resumed(json.loads(state["history"]), float(state["best"]), int(state["bad_epochs"]),
                   int(state["epoch"]))


def write_best_model(out: str | Path, card: Dict[str, Any], net: torch.nn.Module,
                     training: Dict[str, Any]) -> None:
    """Write ``net`` as the model file ``out``; ``card`` (also kept in the checkpoint) takes
    ``training`` as its record of the run."""
    from ..formats.modelfile import save_model
    card["training"] = training
    save_model(out, card, net)


def record_epochs_run(out: str | Path, epochs: int) -> None:
    """The best model was saved mid-run; its card also says how long training went on."""
    from ..formats.modelfile import load_model, save_model
    best = load_model(out)
    best.card["training"]["epochs"] = epochs
    save_model(out, best.card, best.network)
