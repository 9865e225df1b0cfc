import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import torch

from engine.inference.pipeline import predict
from engine.jobs import Cancelled, InputError, OutputError
from engine.formats.modelfile import load_model, read_card
from engine.training import TrainingError, train
from engine.training import loop as loop_module
from engine.training.checkpoints import checkpoint_path, load_checkpoint
from tests.conftest import ROOT, labelled_scene, write_raster

SMALL = {"base": 4, "depth": 2}


@pytest.fixture
def scene(tmp_path):
    return labelled_scene(tmp_path)


def _train(tmp_path, scene, name="m.rsmodel", **kw):
    image, labels = scene
    opts = dict(images=[str(image)], labels=[str(labels)], out=str(tmp_path / name), tile=32,
                batch_size=8, epochs=2, lr=5e-3, samples_per_epoch=32, device="cpu",
                hparams=dict(SMALL), seed=0)
    opts.update(kw)
    return train(**opts)


def test_training_learns_beats_the_classical_floor_and_writes_a_report(tmp_path, scene):
    deep = _train(tmp_path, scene, epochs=12, samples_per_epoch=96, val_fraction=0.25)
    floor = _train(tmp_path, scene, name="md.rsmodel", arch="mindist", hparams={},
                   val_fraction=0.25)
    history = json.loads(open(deep["history"]).read())["epochs"]
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    assert deep["best_metric"] > 0.8 and floor["best_metric"] > 0.8  # both learn (separable scene)
    assert open(deep["curves"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    card = read_card(deep["model"])
    assert [c["name"] for c in card["classes"]] == ["class 1", "class 2", "class 3"]
    assert card["training"]["metrics"]["mIoU"] == pytest.approx(deep["best_metric"])
    group = card["inputs"]["image"]
    assert group["normalisation"] == "image"  # the default: each image standardised first
    assert abs(group["mean"][0]) < 0.5 and 0.5 < group["std"][0] < 1.5
    assert 60 < group["raw_statistics"]["mean"][0] < 200  # from the data, not defaults
    out = tmp_path / "pred.tif"
    predict(floor["model"], scene[0], out, device="cpu")
    with rasterio.open(out) as o, rasterio.open(scene[1]) as ref:
        assert (o.read(1) == ref.read(1)).mean() > 0.8


def test_without_validation_cells_the_last_epoch_is_kept_and_nothing_stops_early(tmp_path,
                                                                                 scene):
    # a learning rate of 0: the score never improves, so validation stops after `patience`
    held = _train(tmp_path, scene, name="held.rsmodel", epochs=4, patience=1, lr=0.0,
                  val_fraction=0.25)
    assert held["epochs_run"] == 2 and read_card(held["model"])["training"]["best_epoch"] == 1
    free_logs = []
    free = _train(tmp_path, scene, name="free.rsmodel", epochs=4, patience=1, lr=0.0,
                  val_fraction=0.0, progress=lambda f, m: free_logs.append(m))
    assert free["epochs_run"] == 4 and read_card(free["model"])["training"]["best_epoch"] == 4
    assert free["warnings"] == []  # a training cell cannot judge the model
    epochs = [m for m in free_logs if "train loss" in m]  # nor is it called validation
    assert len(epochs) == 4 and all("training cell's loss" in m and "val" not in m
                                    for m in epochs)
    logs = []  # a validation share asked for, but the labels fill one cell: the user hears it
    one = _train(tmp_path, scene, name="one.rsmodel", epochs=3, patience=1, lr=0.0, tile=192,
                 batch_size=2, samples_per_epoch=2, progress=lambda f, m: logs.append(m))
    assert one["epochs_run"] == 3 and any("fill a single cell" in m for m in logs)
    learning = _train(tmp_path, scene, name="last.rsmodel", epochs=3, patience=1,
                      val_fraction=0.0)
    kept = load_model(learning["model"], device="cpu").network.state_dict()
    last = load_checkpoint(checkpoint_path(learning["model"]))["model"]
    assert all(torch.equal(kept[k], last[k]) for k in last)


def test_resume_is_exact(tmp_path, scene):
    straight = _train(tmp_path / "a", scene, epochs=3) if (tmp_path / "a").mkdir() is None else None
    (tmp_path / "b").mkdir()
    calls = {"n": 0}

    def cancel_in_epoch_three():
        calls["n"] += 1
        return calls["n"] > 8  # 4 batches per epoch: stops early in epoch 3

    with pytest.raises(Cancelled):
        _train(tmp_path / "b", scene, epochs=3, cancelled=cancel_in_epoch_three)
    ckpt = checkpoint_path(tmp_path / "b" / "m.rsmodel")
    assert load_checkpoint(ckpt)["epoch"] == 2  # the last good checkpoint survived the cancel
    assert not [p for p in (tmp_path / "b").iterdir() if p.name.startswith(".")]
    _train(tmp_path / "b", scene, epochs=3, resume=str(ckpt))
    a = load_checkpoint(checkpoint_path(straight["model"]))["model"]
    b = load_checkpoint(ckpt)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_stops_with_a_message_and_keeps_the_checkpoint(tmp_path, scene, monkeypatch):
    real = loop_module.build_loss
    state = {"n": 0}

    def poisoned(name, **options):
        fn = real(name, **options)

        def loss(out, target):
            state["n"] += 1
            value = fn(out, target)
            return value * float("nan") if state["n"] > 6 else value
        return loss

    monkeypatch.setattr(loop_module, "build_loss", poisoned)
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 2.*last good checkpoint"):
        _train(tmp_path, scene, epochs=3)
    assert load_checkpoint(checkpoint_path(tmp_path / "m.rsmodel"))["epoch"] == 1


def test_disk_full_keeps_the_previous_checkpoint(tmp_path, scene, monkeypatch):
    real_save = torch.save
    calls = {"n": 0}

    def full_disk(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    ckpt = checkpoint_path(tmp_path / "m.rsmodel")
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OutputError, match="disk full.*previous checkpoint is intact"):
        _train(tmp_path, scene, epochs=3)
    assert load_checkpoint(ckpt)["epoch"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_init_loads_matching_layers_by_value(tmp_path, scene):
    first = _train(tmp_path, scene, name="first.rsmodel", epochs=1)
    image, _ = scene
    two_class = write_raster(tmp_path / "two.tif",
                             (rasterio.open(scene[1]).read() > 1).astype(np.uint8) + 1)
    second = _train(tmp_path, (image, two_class), name="second.rsmodel", epochs=1,
                    init=first["model"], lr=1e-12, init_head="new")
    a, b = load_model(first["model"]).network.state_dict(), load_model(second["model"]).network.state_dict()
    assert torch.allclose(a["encoder.stem.0.weight"], b["encoder.stem.0.weight"], atol=1e-6)
    assert a["decoder.head.weight"].shape != b["decoder.head.weight"].shape
    init = read_card(second["model"])["training"]["init"]
    assert init["skipped"] == 2 and init["loaded"] == len(a) - 2


def test_change_training_defaults_to_fcsiamdiff(tmp_path, rng):
    t1 = rng.integers(60, 120, (3, 96, 96)).astype(np.uint8)
    t2 = t1.copy()
    change = np.zeros((1, 96, 96), np.uint8)
    for y, x in rng.integers(0, 80, (12, 2)):
        t2[:, y:y + 12, x:x + 12] = 230
        change[0, y:y + 12, x:x + 12] = 255  # LEVIR-style 0/255 labels
    a = write_raster(tmp_path / "t1.tif", t1)
    b = write_raster(tmp_path / "t2.tif", t2)
    c = write_raster(tmp_path / "change.tif", change)
    result = train(task="change", images=[str(a)], images2=[str(b)],
                   labels=[str(c)], out=str(tmp_path / "cd.rsmodel"), tile=32, epochs=10,
                   samples_per_epoch=64, lr=1e-2, device="cpu", hparams=dict(SMALL))
    card = read_card(result["model"])
    assert set(card["inputs"]) == {"t1", "t2"} and card["task"] == "change"
    assert card["architecture"] == "fcsiamdiff"  # the task's default: no --arch needed
    assert [c["name"] for c in card["classes"]] == ["no change", "change"]
    assert result["best_metric"] > 0.5


def test_bad_training_requests(tmp_path, scene):
    image, labels = scene
    with pytest.raises(InputError, match="for change, not segmentation"):
        _train(tmp_path, scene, arch="fcsiamdiff")
    with pytest.raises(InputError, match="either as a raster"):
        train(images=[str(image)], out=str(tmp_path / "x.rsmodel"))
    with pytest.raises(InputError, match="--class-field"):
        train(images=[str(image)], polygons="p.gpkg", out=str(tmp_path / "x.rsmodel"))
    assert not (tmp_path / "x.rsmodel").exists()


def test_a_tile_larger_than_the_images_shrinks_to_fit(tmp_path, scene):
    messages = []
    result = _train(tmp_path, scene, tile=256, epochs=1, samples_per_epoch=8,
                    progress=lambda f, m: messages.append(m))
    assert read_card(result["model"])["tile_size"] == 192  # the 192 px scene, whole
    assert "training tile 192 px instead of 256: the smallest image is 192 px across, which " \
           "holds 192 px" in messages


def test_torchrun_two_cpu_processes_only_rank0_writes(tmp_path, scene):
    image, labels = scene
    out = tmp_path / "ddp.rsmodel"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_port", str(29500 + os.getpid() % 1000)]
    r = subprocess.run(torchrun + ["-m", "engine", "train", "--image", str(image), "--labels",
                                   str(labels), "--out", str(out), "--tile", "32", "--epochs", "2",
                                   "--samples-per-epoch", "32", "--batch-size", "4", "--device",
                                   "cpu", "--workers", "0", "--hparams", json.dumps(SMALL)],
                       cwd=ROOT, capture_output=True, text=True, timeout=240,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert r.stdout.count("wrote ") == 1  # rank 0 only
    assert read_card(out)["training"]["epochs"] == 2
    written = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("ddp"))
    assert written == ["ddp.curves.png", "ddp.history.json", "ddp.rsmodel", "ddp.rsmodel.last.ckpt"]


def test_training_from_polygons_in_another_crs(tmp_path, scene):
    from engine.analysis.vectorize import vectorize
    image, labels = scene
    utm = tmp_path / "polys_utm.gpkg"
    vectorize(labels, utm)
    web = tmp_path / "polys_3857.gpkg"
    subprocess.run(["ogr2ogr", "-t_srs", "EPSG:3857", str(web), str(utm)], check=True)
    result = train(images=[str(image)], polygons=str(web), class_field="class_name",
                   out=str(tmp_path / "poly.rsmodel"), tile=32, epochs=6, samples_per_epoch=48,
                   lr=5e-3, device="cpu", hparams=dict(SMALL))
    card = read_card(result["model"])
    assert [c["name"] for c in card["classes"]] == ["1", "2", "3"]  # names from the field
    assert result["best_metric"] > 0.5


def test_label_driven_networks_get_targets_in_training_only(tmp_path, scene):
    from engine.models import register
    from tests.conftest import Pointwise
    seen = {"train": 0, "eval": 0}

    class NeedsLabels(Pointwise):
        def forward(self, image, targets=None):
            seen["train" if targets is not None else "eval"] += 1
            if self.training:
                assert targets is not None and targets.shape[-2:] == image.shape[-2:]
            return super().forward(image)

    register("test-needs-labels", task="segmentation", description="test only",
             input_multiple=1)(lambda in_channels, num_classes: NeedsLabels(in_channels, num_classes))
    _train(tmp_path, scene, arch="test-needs-labels", hparams={}, epochs=1)
    assert seen["train"] > 0 and seen["eval"] > 0


def test_multimodal_training_with_a_dsm_in_another_crs(tmp_path, scene):
    """CaFE trains on image + DSM; the DSM lives in another CRS and resolution and is warped
    onto the image grid on the fly; a missing DSM is refused up front."""
    import subprocess
    from engine.models.cafe import TINY
    image, labels = scene
    with rasterio.open(labels) as lab:
        height = (lab.read(1).astype("float32") - 1) * 10  # classes 2, 3 are "higher"
    dsm = write_raster(tmp_path / "dsm_utm.tif", height[None], res=1.0)
    moved = tmp_path / "dsm_3857.tif"
    subprocess.run(["gdalwarp", "-q", "-t_srs", "EPSG:3857", "-tr", "1.5", "1.5", str(dsm),
                    str(moved)], check=True)
    with pytest.raises(InputError, match="--aux"):
        _train(tmp_path, scene, arch="cafe", hparams=dict(TINY))
    result = _train(tmp_path, scene, arch="cafe", aux=[str(moved)], hparams=dict(TINY), epochs=2,
                    tile=64, optimizer="adamw", lr=1e-3, loss="cafe")
    card = read_card(result["model"])
    assert set(card["inputs"]) == {"image", "aux"} and card["hparams"]["aux_channels"] == 1
    out = tmp_path / "pred.tif"
    predict(result["model"], image, out, aux=moved, device="cpu")
    with pytest.raises(InputError, match="needs an auxiliary raster"):
        predict(result["model"], image, tmp_path / "x.tif", device="cpu")


def test_each_epoch_draws_new_windows_with_worker_processes(tmp_path, scene):
    """With DataLoader workers, epoch 2 must not replay epoch 1's windows."""
    from engine.training.data import Scene, WindowDataset, discover_label_classes, scan_cells
    from engine.training.data import SceneReader
    image, labels = scene
    s = Scene({"image": str(image)}, labels=str(labels))
    spec = discover_label_classes([s], None)
    cells = scan_cells([SceneReader(s, spec)], 32, 3)
    ds = WindowDataset([s], spec, cells, 32, {"image": ([0] * 3, [1] * 3)}, train=True, length=4)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=1)
    epochs = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        epochs.append(next(iter(loader))["image"])
    assert not torch.equal(epochs[0], epochs[1])


def test_time_budget_is_checked_after_every_step(tmp_path, scene):
    messages = []
    result = _train(tmp_path, scene, epochs=50, samples_per_epoch=320, time_budget_s=0.01,
                    progress=lambda f, m: messages.append(m))
    assert result["epochs_run"] == 1
    assert read_card(result["model"])["training"]["epochs"] == 1
    steps = [m for m in messages if m.startswith("epoch 1/")]
    assert 1 <= len(steps) < 40  # stopped inside the first of 40-step epochs


class _Clock:
    """A clock that advances 0.5 s each time it is read: step times are known exactly."""

    def __init__(self):
        self.t = 0.0

    def perf_counter(self):
        self.t += 0.5
        return self.t


def test_time_budget_sizes_the_epochs_to_fit(tmp_path, scene, monkeypatch):
    from engine.training import budget as budget_module
    clock = _Clock()
    monkeypatch.setattr(loop_module, "time", clock)
    monkeypatch.setattr(budget_module, "time", clock)
    messages = []
    result = _train(tmp_path, scene, epochs=50, samples_per_epoch=320, time_budget_s=60,
                    progress=lambda f, m: messages.append(m))
    fitted = [m for m in messages if m.startswith("time budget 60 s at")]
    assert len(fitted) == 1
    history = json.loads(open(result["history"]).read())["epochs"]
    assert 1 < result["epochs_run"] < 50  # several short epochs instead of 1.5 long ones
    planned = int(fitted[0].split(": ")[1].split()[0])
    # the estimate fits (each epoch's checkpoint and history are not in it: within 20 %);
    # per-step checks end the run
    assert 0.8 * planned <= result["epochs_run"] <= planned
    assert history[-1]["lr"] < 0.2 * 5e-3  # the schedule decayed within the budget


def test_resume_with_no_epochs_left_writes_the_report(tmp_path, scene):
    done = _train(tmp_path, scene, epochs=2)
    again = _train(tmp_path, scene, epochs=2, resume=done["checkpoint"])
    assert again["epochs_run"] == 2 and again["history"]
    assert json.loads(open(again["history"]).read())["epochs"][-1]["epoch"] == 2


def test_a_budget_that_shortens_a_fine_tune_shortens_its_frozen_epochs(tmp_path, scene, monkeypatch):
    from engine.training import budget as budget_module
    base = _train(tmp_path, scene, name="base.rsmodel", epochs=1)
    clock = _Clock()
    monkeypatch.setattr(loop_module, "time", clock)
    monkeypatch.setattr(budget_module, "time", clock)
    messages = []
    tuned = _train(tmp_path, scene, name="tuned.rsmodel", init=base["model"], epochs=30,
                   samples_per_epoch=320, time_budget_s=20, progress=lambda f, m: messages.append(m))
    planned = int([m for m in messages if m.startswith("time budget")][0].split(": ")[1].split()[0])
    assert planned < 10  # fewer epochs than the 30 // 3 the encoder would stay frozen for
    history = json.loads(open(tuned["history"]).read())["epochs"]
    assert len(history) > planned // 3 + 1  # epochs after the (shortened) frozen third ran
    a = load_model(base["model"]).network.state_dict()["encoder.stem.0.weight"]
    b = load_model(tuned["model"]).network.state_dict()["encoder.stem.0.weight"]
    assert not torch.allclose(a, b)  # the encoder trained: 30 // 3 = 10 frozen epochs would not
