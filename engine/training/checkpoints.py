"""Training checkpoints: written atomically (the previous one survives a crash or a full disk),
loaded with ``torch.load(weights_only=True)`` so a checkpoint can never run code.  torch loads
only inside the functions that need it, so ``checkpoint_path`` is free for the plugin to use."""
from __future__ import annotations

import errno
from pathlib import Path
from typing import Any, Dict

from ..jobs import InputError, ModelFileError, OutputError, atomic_output

TRAIN_FORMAT = "rs_seg.checkpoint"
PRETRAIN_FORMAT = "rs_seg.pretrain_checkpoint"
_RESUME_HINT = {TRAIN_FORMAT: "resume it with 'train --resume'",
                PRETRAIN_FORMAT: "resume it with 'pretrain --resume'"}


def checkpoint_path(out: str | Path) -> Path:
    """Where the last training state of model ``out`` is kept."""
    return Path(str(out) + ".last.ckpt")


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
