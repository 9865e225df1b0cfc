"""``python -m engine pretrain``: the options and the run."""
from __future__ import annotations

import argparse

from engine.formats.modelfile import read_card
from engine.training.pretrain.cli import COMMAND, HELP, add_arguments, run
from tests.engine.training.pretrain.conftest import rasters


def test_command_line_hooks(tmp_path, capsys):
    images = rasters(tmp_path, n=1, size=64, seed=2)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "cli.rsmodel"
    args = parser.parse_args(["--image", images[0], "--arch", "unet", "--out", str(out),
                              "--epochs", "2", "--batch-size", "2", "--crop", "32",
                              "--patch-size", "4", "--patch-num", "2", "--samples-per-epoch",
                              "2", "--device", "cpu", "--workers", "1", "--seed", "1",
                              "--hparams", '{"base": 4, "depth": 2}'])
    assert COMMAND == "pretrain" and HELP
    run(args)
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "--init" in printed
    assert read_card(out)["task"] == "pretrained"
