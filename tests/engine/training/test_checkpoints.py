import os
import time

import pytest

from engine.jobs import Cancelled
from engine.training.checkpoints import (cancel_says_what_it_keeps, checkpoint_path,
                                         kept_after_cancel)


def test_only_a_checkpoint_of_this_run_counts_as_kept(tmp_path):
    out = tmp_path / "m.rsmodel"
    since = time.time()
    assert kept_after_cancel(out, since, "train") is None  # no epoch finished
    ckpt = checkpoint_path(out)
    ckpt.write_bytes(b"state")
    os.utime(ckpt, (since - 60, since - 60))  # left by an earlier run
    assert kept_after_cancel(out, since, "train") is None
    os.utime(ckpt, (since + 1, since + 1))
    assert kept_after_cancel(out, since, "pretrain") == (
        f"{out} holds the best model of the finished epochs; 'pretrain --resume {ckpt}' goes on "
        f"from the last one")


def test_a_cancel_says_what_it_kept_or_stays_as_it_was(tmp_path):
    out = tmp_path / "m.rsmodel"
    with pytest.raises(KeyboardInterrupt):
        with cancel_says_what_it_keeps(out, "train"):
            raise KeyboardInterrupt
    with pytest.raises(Cancelled) as info:
        with cancel_says_what_it_keeps(out, "train"):
            checkpoint_path(out).write_bytes(b"state")  # an epoch finished
            raise KeyboardInterrupt
    assert info.value.kept.startswith(f"{out} holds the best model")
