"""Every bad input of the command line ends in one sentence: exit 2, no traceback, no input
overwritten, no file left behind.  Each case is a row of docs/bad-input.md
(:mod:`tests.engine.bad_input_table`)."""
from __future__ import annotations

import contextlib
import os
import shlex
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from engine.__main__ import main
from engine.jobs import output_lock
from tests.conftest import make_model, write_raster
from tests.engine import bad_input_table


def tiled_raster(path: Path, bands: int = 3, size: int = 96, seed: int = 0) -> Path:
    """A small tiled, compressed GeoTIFF (32-pixel blocks: damage hits one block)."""
    rng = np.random.default_rng(seed)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=bands,
                       dtype="uint8", crs="EPSG:32633",
                       transform=from_origin(500000, 5000000, 0.5, 0.5), tiled=True,
                       blockxsize=32, blockysize=32, compress="deflate") as dst:
        dst.write(rng.integers(0, 255, (bands, size, size), np.uint8))
    return path


class Scene:
    """The files a case starts from, in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.image = tiled_raster(folder / "image.tif")
        self.model = make_model(folder / "m.rsmodel", arch="test-pointwise", bands=3, classes=2,
                                tile=32, overlap=8)
        self.classes = write_raster(folder / "classes.tif", np.ones((1, 32, 32), np.uint8))

    def __getattr__(self, name: str) -> Path:  # any other name: a path in the folder
        return self.folder / name.replace("_", ".", 1)


def _predict(s: Scene, *extra: object) -> List[object]:
    return ["predict", "--model", s.model, "--input", s.image, "--device", "cpu", *extra]


def _truncated(s: Scene) -> Path:
    data = s.image.read_bytes()
    s.bad_tif.write_bytes(data[: len(data) * 2 // 3])
    return s.bad_tif


def _flipped(s: Scene) -> Path:
    data = bytearray(s.image.read_bytes())
    from osgeo import gdal  # flip bytes of the block at column 1, row 1
    ds = gdal.Open(str(s.image))  # held: a band outlives no dataset
    offset = int(ds.GetRasterBand(1).GetMetadataItem("BLOCK_OFFSET_1_1", "TIFF"))
    ds = None
    data[offset + 8:offset + 60] = bytes(b ^ 0x5A for b in data[offset + 8:offset + 60])
    s.bad_tif.write_bytes(bytes(data))
    return s.bad_tif


def _text(s: Scene) -> Path:
    s.notes_tif.write_text("not a raster")
    return s.notes_tif


def _colour_labels(s: Scene) -> Path:
    rgb = np.zeros((3, 96, 96), np.uint8)
    rgb[2, :, 48:] = 255  # left black, right blue (ISPRS building)
    return write_raster(s.folder / "colours.tif", rgb, photometric="RGB")


def _uncertainty(s: Scene) -> Path:
    from engine.inference.uncertainty import NODATA
    return write_raster(s.folder / "unsure.tif", np.full((1, 96, 96), 30, np.uint8),
                        nodata=NODATA)


def _corrections(s: Scene) -> Path:
    from engine.io.corrections import create_corrections
    path = s.folder / "corrections.gpkg"
    return path if path.exists() else create_corrections(path, "EPSG:32633")


def _linked(s: Scene) -> Path:
    s.link_tif.symlink_to(s.image)
    return s.link_tif


def _folder_of_inputs(s: Scene) -> List[object]:
    return ["predict", "--model", s.model, "--input", s.folder, "--output-dir", s.folder,
            "--output-name", "{stem}.tif", "--device", "cpu"]


CASES: Dict[str, Callable[[Scene], List[object]]] = {
    "predict: output is the input": lambda s: _predict(s, "--output", s.image),
    "predict: output is a symlink to the input": lambda s: _predict(s, "--output", _linked(s)),
    "predict: probabilities are the input": lambda s: _predict(
        s, "--output", s.out_tif, "--probabilities", s.image),
    "predict: probabilities are the output": lambda s: _predict(
        s, "--output", s.out_tif, "--probabilities", s.out_tif),
    "predict: output is the model file": lambda s: _predict(s, "--output", s.model),
    "predict: output is not a GeoTIFF name": lambda s: _predict(s, "--output", s.out_png),
    "predict: another run writes the output": lambda s: _predict(s, "--output", s.out_tif),
    "predict: truncated GeoTIFF": lambda s: ["predict", "--model", s.model, "--input",
                                             _truncated(s), "--output", s.out_tif,
                                             "--device", "cpu"],
    "predict: one corrupt block": lambda s: ["predict", "--model", s.model, "--input",
                                             _flipped(s), "--output", s.out_tif,
                                             "--device", "cpu"],
    "predict: not a raster": lambda s: ["predict", "--model", s.model, "--input", _text(s),
                                        "--output", s.out_tif, "--device", "cpu"],
    "predict folder: output folder holds the inputs": _folder_of_inputs,
    "predict folder: output name not a GeoTIFF": lambda s: [
        "predict", "--model", s.model, "--input", s.image, "--output-dir", s.out,
        "--output-name", "{stem}.jpg", "--device", "cpu"],
    "change: output is the 'before' image": lambda s: [
        "change", "--t1", s.image, "--t2", s.image, "--output", s.image, "--device", "cpu"],
    "change: probabilities are the output": lambda s: [
        "change", "--t1", s.image, "--t2", s.image, "--output", s.out_tif, "--probabilities",
        s.out_tif, "--device", "cpu"],
    "vectorize: another run writes the output": lambda s: [
        "vectorize", "--input", s.classes, "--output", s.out_gpkg],
    "evaluate: report is the prediction": lambda s: [
        "evaluate", "--prediction", s.classes, "--reference", s.classes, "--report", s.classes],
    "evaluate: report and HTML page are one file": lambda s: [
        "evaluate", "--prediction", s.classes, "--reference", s.classes, "--report",
        s.report_json, "--html", s.report_json],
    "export: output is the model file": lambda s: ["export", "--model", s.model, "--output",
                                                    s.model],
    "derive: output is the input": lambda s: ["derive", "--kind", "edges", "--input", s.image,
                                              "--output", s.image],
    "init-model: output is the backbone weights file": lambda s: [
        "init-model", "--bands", "3", "--classes", "2", "--out", s.model, "--backbone-weights",
        s.model],
    "train: model file is the image": lambda s: [
        "train", "--image", s.image, "--labels", s.classes, "--out", s.image, "--epochs", "1"],
    "train: colour-coded labels without --label-colours": lambda s: [
        "train", "--image", s.image, "--labels", _colour_labels(s), "--out", s.out_rsmodel,
        "--epochs", "1"],
    "train: colour labels of another table": lambda s: [
        "train", "--image", s.image, "--labels", _colour_labels(s), "--label-colours",
        s.table_txt.write_text("1,2,3,a\n4,5,6,b\n") and s.table_txt, "--out", s.out_rsmodel,
        "--epochs", "1"],
    "train: band that does not exist": lambda s: [
        "train", "--image", s.image, "--labels", s.classes, "--bands", "1,2,7", "--out",
        s.out_rsmodel, "--epochs", "1"],
    "places: the image given as the uncertainty": lambda s: [
        "places", "--uncertainty", s.image, "--image", s.image],
    "places: output is the corrections file": lambda s: [
        "places", "--uncertainty", _uncertainty(s), "--image", s.image, "--corrections",
        _corrections(s), "--output", _corrections(s)],
}
LOCKED = {"predict: another run writes the output": "out.tif",
          "vectorize: another run writes the output": "out.gpkg"}


def _snapshot(folder: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_sentence_and_leaves_nothing(case, tmp_path, capsys):
    scene = Scene(tmp_path)
    argv = [str(a) for a in CASES[case](scene)]
    capsys.readouterr()
    with output_lock(tmp_path / LOCKED[case]) if case in LOCKED else contextlib.nullcontext():
        before = _snapshot(tmp_path)
        code = main(argv)
        after = _snapshot(tmp_path)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    # one sentence, last; lines before it are the run's log (backend, threads), never a traceback
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:], err
    assert "Traceback" not in err
    assert after == before  # no input overwritten, no file left behind
    if case not in LOCKED:
        assert not any(p.name.endswith((".partial", ".lock")) for p in tmp_path.iterdir())
    command = "python -m engine " + " ".join(shlex.quote(a) for a in argv)
    bad_input_table.check_row(case, bad_input_table.normalise(command, tmp_path), code,
                              bad_input_table.normalise(lines[-1][len("error: "):], tmp_path))


def test_the_table_has_a_row_for_each_case_and_no_other():
    if bad_input_table.WRITE:
        pytest.skip("the table is being rewritten")
    from tests.engine.test_cli_interrupt import CASE as INTERRUPT
    from tests.engine.test_cli_interrupt import TRAINING_CASE
    assert set(bad_input_table.committed()) == set(CASES) | {INTERRUPT, TRAINING_CASE}


def test_a_good_run_beside_them_still_writes(tmp_path, capsys):
    scene = Scene(tmp_path)
    assert main([str(a) for a in _predict(scene, "--output", scene.out_tif)]) == 0
    with rasterio.open(scene.out_tif) as ds:
        assert ds.shape == (96, 96)
    assert sorted(os.listdir(tmp_path)) == ["classes.tif", "image.tif", "m.rsmodel", "out.tif"]
