"""GLCNet self-supervised pre-training (seed-models.md §3.2–3.4): views with tracked pixel
correspondence, RoI matching, NT-Xent, the stage (card, checkpoint, cancel, resume, DDP-ready
loop), fine-tuning from it, and the command-line hooks."""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch

import engine.models.glcnet as glcnet
from engine.training import pretrain as pt
from engine.jobs import Cancelled, InputError, ModelFileError
from engine.formats.modelfile import load_model, read_card
from engine.training import train
from engine.training.checkpoints import PRETRAIN_FORMAT, load_checkpoint
from tests.conftest import labelled_scene, write_raster

# Tiny GLCNet; ASPP dropout 0.1 instead of 0.5: with 16 channels on a 3×3 map, dropout 0.5 would
# drown the style vector (channel variance) of these small views in noise.
NET = {"depth": 18, "width": 8, "aspp_channels": 16, "low_level_channels": 8,
       "decoder_channels": 16, "dropout": 0.1}
UNET = {"base": 4, "depth": 2}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine two OpenMP threads per process can be
    tens of times slower.  Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _smooth_field(rng, bands, size, cells=6):
    low = torch.from_numpy(rng.normal(0, 1, (1, bands, cells, cells)).astype(np.float32))
    up = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic",
                                         align_corners=False)[0].numpy()
    return up


def _rasters(folder, n=4, bands=3, size=80, seed=0):
    """Unlabelled rasters with structure (smooth colour fields) and a style of their own (colour
    offset, texture strength)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        img = (128 + 40 * _smooth_field(rng, bands, size)
               + rng.normal(0, 4 + 8 * i, (bands, size, size)))
        img += rng.uniform(-60, 60, (bands, 1, 1))
        paths.append(str(write_raster(folder / f"u{i}.tif",
                                      np.clip(img, 1, 255).astype(np.uint8))))
    return paths


def _coordinate_window(size):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return np.stack([yy, xx, yy * size + xx]), np.arange(size * size).reshape(size, size)


# ---- correspondence -----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(60))
def test_index_maps_track_every_view_pixel_exactly(seed):
    size, crop = 73, 64
    pixels, index = _coordinate_window(size)
    rng = np.random.default_rng(seed)
    v1, v2, i1, i2 = pt.two_views(pixels, index, crop, rng, jitter=False, resample="nearest")
    for v, i in ((v1, i1), (v2, i2)):
        assert v.shape == (3, crop, crop) and i.shape == (crop, crop)
        # nearest resampling of the pixels lands exactly on the source pixel named by the map
        assert np.array_equal(v[0], i // size) and np.array_equal(v[1], i % size)
        assert np.array_equal(v[2], i.astype(np.float32))
    # the image itself is resampled bilinearly at the same pixel centres: within half a pixel
    rng = np.random.default_rng(seed)
    b1, b2, j1, j2 = pt.two_views(pixels, index, crop, rng, jitter=False)
    assert np.array_equal(j1, i1) and np.array_equal(j2, i2)
    for v, i in ((b1, i1), (b2, i2)):
        assert np.abs(v[0] - i // size).max() <= 0.5 + 1e-4
        assert np.abs(v[1] - i % size).max() <= 0.5 + 1e-4
    # matched RoI centres are the same source pixel in both views, inside the views
    found = pt.match_patches(i1, i2, 8, 4, np.random.default_rng(seed))
    assert found is not None
    c1, c2 = found
    assert c1.shape == c2.shape == (4, 2)
    assert np.array_equal(i1[c1[:, 0], c1[:, 1]], i2[c2[:, 0], c2[:, 1]])
    for c in (c1, c2):
        assert (c - 4 >= 0).all() and (c - 4 + 8 <= crop - 1).all()   # box of 9 px inside


def test_view_geometry_is_random_and_covers_flips_and_rotations():
    size, crop = 40, 32
    pixels, index = _coordinate_window(size)
    seen = set()
    for seed in range(200):
        _, _, i1, i2 = pt.two_views(pixels, index, crop, np.random.default_rng(seed), jitter=False)
        # orientation of view 2 relative to the source: where do the row/column axes point?
        r, c = i2 // size, i2 % size
        down = (np.sign(r[-1, 0] - r[0, 0]), np.sign(c[-1, 0] - c[0, 0]))
        right = (np.sign(r[0, -1] - r[0, 0]), np.sign(c[0, -1] - c[0, 0]))
        seen.add((int(down[0]), int(down[1]), int(right[0]), int(right[1])))
        rr, cc = i1 // size, i1 % size                  # view 1: crop only, upright
        assert (np.diff(rr, axis=0) >= 0).all() and (np.diff(cc, axis=1) >= 0).all()
        h = rr.max() - rr.min() + 1
        w = cc.max() - cc.min() + 1
        assert 0.4 * size * size * 0.85 <= h * w <= size * size
        assert 3 / 4 * 0.8 <= w / h <= 4 / 3 * 1.25
    assert len(seen) == 8            # all eight flip/rotation combinations occur


def test_invalid_pixels_are_never_matched():
    size, crop = 73, 64
    pixels, index = _coordinate_window(size)
    index = index.copy()
    index[:, : size // 2] = -1                         # left half nodata
    for seed in range(30):
        rng = np.random.default_rng(seed)
        _, _, i1, i2 = pt.two_views(pixels, index, crop, rng, jitter=False)
        found = pt.match_patches(i1, i2, 6, 3, rng)
        if found is None:
            continue
        c1, c2 = found
        assert (i1[c1[:, 0], c1[:, 1]] >= 0).all()
        assert np.array_equal(i1[c1[:, 0], c1[:, 1]], i2[c2[:, 0], c2[:, 1]])


def _disjoint(c, patch_size):
    for a in range(len(c)):
        for b in range(a + 1, len(c)):
            if (np.abs(c[a] - c[b]) <= patch_size).all():
                return False
    return True


def test_matched_patches_do_not_overlap_when_possible():
    size = 64
    index = np.arange(size * size).reshape(size, size)
    rotated = np.rot90(index, 1).copy()
    for seed in range(50):
        c1, c2 = pt.match_patches(index, rotated, 8, 4, np.random.default_rng(seed))
        assert _disjoint(c1, 8) and _disjoint(c2, 8)
        assert np.array_equal(index[c1[:, 0], c1[:, 1]], rotated[c2[:, 0], c2[:, 1]])
    # random views: disjoint in the great majority of cases, always the same source pixels
    pixels, index = _coordinate_window(73)
    ok = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        _, _, i1, i2 = pt.two_views(pixels, index, 64, rng, jitter=False)
        c1, c2 = pt.match_patches(i1, i2, 8, 4, rng)
        ok += _disjoint(c1, 8) and _disjoint(c2, 8)
    assert ok >= 80
    # no shared pixel away from the borders: no match
    assert pt.match_patches(index[:20, :20], index[40:60, 40:60], 4, 2,
                            np.random.default_rng(0)) is None


def test_photometric_jitter_any_band_count():
    rng = np.random.default_rng(0)
    for bands in (1, 2, 3, 4, 6):
        x = rng.normal(0, 1, (bands, 32, 32)).astype(np.float32)
        changed = 0
        for seed in range(6):
            y = pt.photometric(x, np.random.default_rng(seed))
            assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
            changed += not np.allclose(x, y)
        assert changed >= 4
    # the hue rotation keeps grey (equal-band) pixels grey and preserves norms
    r = pt._grey_rotation(0.7)
    assert np.allclose(r @ np.ones(3), np.ones(3))
    assert np.allclose(r.T @ r, np.eye(3))


def test_dataset_skips_nodata_heavy_windows_and_gives_matched_views(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(1, 255, (4, 96, 96)).astype(np.uint8)
    img[:, :, :60] = 0                                   # nodata: the left 60 columns
    path = str(write_raster(tmp_path / "nd.tif", img, nodata=0))
    ds = pt.TwoViewDataset([path], window=32, crop=32, stats=([100.0] * 4, [50.0] * 4),
                           patch_size=4, patch_num=3, length=8, seed=0)
    try:
        for k in range(10):
            pixels, index = ds.read_window(np.random.default_rng(k))
            assert (index >= 0).mean() >= pt.MIN_VALID
            assert (pixels[:, index < 0] == 0).all()    # invalid pixels sit at the mean
        item = ds[3]
        assert item["v1"].shape == item["v2"].shape == (4, 32, 32)
        assert item["c1"].shape == item["c2"].shape == (3, 2)
        again = ds[3]                                     # reproducible per (seed, epoch, index)
        assert all(torch.equal(item[k], again[k]) for k in item)
        ds.set_epoch(1)
        assert not torch.equal(ds[3]["v1"], item["v1"])
    finally:
        ds.close()


# ---- losses -----------------------------------------------------------------------------------

def _nt_xent_direct(z1, z2, tau):
    z = [v / np.linalg.norm(v) for v in np.concatenate([z1, z2])]
    n2 = len(z)
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        pos = (i + n) % n2
        num = math.exp(float(z[i] @ z[pos]) / tau)
        den = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(n2) if k != i)
        total += -math.log(num / den)
    return total / n2


def test_nt_xent_matches_a_direct_computation():
    z1 = np.array([[1.0, 0.0], [0.6, 0.8]])
    z2 = np.array([[0.8, 0.6], [0.0, 2.0]])
    got = pt.nt_xent(torch.tensor(z1), torch.tensor(z2), 0.5)
    assert float(got) == pytest.approx(_nt_xent_direct(z1, z2, 0.5), rel=1e-5)
    rng = np.random.default_rng(3)
    for n in (1, 3, 5):                                # any batch size, masks built per call
        a, b = rng.normal(size=(n, 7)), rng.normal(size=(n, 7))
        got = pt.nt_xent(torch.tensor(a), torch.tensor(b), 0.5)
        assert float(got) == pytest.approx(_nt_xent_direct(a, b, 0.5), rel=1e-5)
    assert float(pt.nt_xent(torch.randn(1, 4), torch.randn(1, 4))) == pytest.approx(0.0)


def test_nt_xent_prefers_matching_views():
    torch.manual_seed(0)
    z = torch.randn(16, 32)
    same = pt.nt_xent(z, z + 0.01 * torch.randn(16, 32))
    other = pt.nt_xent(z, torch.randn(16, 32))
    assert float(same) < float(other)
    assert float(same) < math.log(31)                 # below chance level


def test_roi_max_pool_follows_roipool_bins():
    torch.manual_seed(0)
    feat = torch.randn(2, 3, 20, 20)
    centres = torch.tensor([[5, 7], [10, 4], [12, 12]])
    owner = torch.tensor([0, 1, 1])
    ps = 6
    got = pt.roi_max_pool(feat, owner, centres, ps)
    assert got.shape == (3, 3, ps, ps)
    r = ps + 1
    for n in range(3):
        y0, x0 = int(centres[n, 0]) - ps // 2, int(centres[n, 1]) - ps // 2
        for i in range(ps):
            for j in range(ps):
                hs, he = math.floor(i * r / ps), math.ceil((i + 1) * r / ps)
                ws, we = math.floor(j * r / ps), math.ceil((j + 1) * r / ps)
                ref = feat[owner[n], :, y0 + hs:y0 + he, x0 + ws:x0 + we].amax((1, 2))
                assert torch.allclose(got[n, :, i, j], ref)


def test_style_vector_is_channel_mean_and_variance():
    x = torch.randn(2, 5, 3, 4)
    s = pt.style_vector(x)
    assert s.shape == (2, 10)
    assert torch.allclose(s[:, :5], x.mean((2, 3)), atol=1e-6)
    assert torch.allclose(s[:, 5:], x.var((2, 3), unbiased=False), atol=1e-6)


def test_objective_heads_and_batch_of_one():
    torch.manual_seed(0)
    net = glcnet.build_glcnet(3, 64, **NET)
    obj = pt.GLCObjective(net, NET["aspp_channels"], 64, patch_size=6)
    assert [m.in_features for m in obj.global_head if isinstance(m, torch.nn.Linear)] == [32, 16]
    assert [m.out_features for m in obj.global_head if isinstance(m, torch.nn.Linear)] == [16, 64]
    assert [m.in_features for m in obj.local_head if isinstance(m, torch.nn.Linear)] == [64, 64]
    v = torch.randn(1, 3, 32, 32)
    c = torch.tensor([[[8, 8], [20, 20]]])
    losses = obj(v, v.flip(-1), c, c)
    assert losses.shape == (3,) and torch.isfinite(losses).all()
    losses = losses.detach()
    assert float(losses[1]) == pytest.approx(0.0, abs=1e-6)        # one pair: no negatives
    assert float(losses[0]) == pytest.approx(0.5 * float(losses[1]) + 0.5 * float(losses[2]))


# ---- the stage --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pre")
    images = _rasters(folder)
    messages = []
    result = pt.pretrain(images, "glcnet", str(folder / "pre.rsmodel"), epochs=3,
                         batch_size=4, crop=48, patch_size=6, patch_num=3, lr=2e-3,
                         samples_per_epoch=40, device="cpu", hparams=dict(NET), seed=0,
                         progress=lambda f, m: messages.append((f, m)))
    return folder, images, result, messages


def test_pretraining_losses_are_finite_and_fall(pretrained):
    _, _, result, messages = pretrained
    steps = np.array(result["step_losses"])
    assert steps.shape == (30, 3) and np.isfinite(steps).all()
    first, last = steps[:5].mean(0), steps[-5:].mean(0)
    assert last[0] < first[0]                 # total
    assert last[1] < first[1]                 # global style
    assert last[2] < first[2]                 # local matching
    assert np.allclose(steps[:, 0], 0.5 * steps[:, 1] + 0.5 * steps[:, 2], rtol=1e-5)
    fractions = [f for f, _ in messages if f >= 0]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_pretrained_model_file_and_card(pretrained):
    folder, images, result, _ = pretrained
    card = read_card(result["model"])
    assert card["task"] == "pretrained" and card["architecture"] == "glcnet"
    assert card["classes"] == []
    assert card["hparams"] == {"in_channels": 3, "num_classes": 64, **NET}
    image = card["inputs"]["image"]
    assert [b["index"] for b in image["bands"]] == [1, 2, 3]
    assert len(image["mean"]) == 3 and all(40 < m < 220 for m in image["mean"])
    assert all(s > 1 for s in image["std"]) and image["dtype"] == "uint8"
    assert isinstance(card["tile_size"], int) and card["tile_size"] % 16 == 0
    training = card["training"]
    assert training["epochs"] == 3 and len(training["history"]) == 3
    assert training["best_epoch"] == result["best_epoch"]
    assert {"loss", "global_loss", "local_loss", "lr"} <= set(training["history"][0])
    assert training["hyper_parameters"]["patch_size"] == 6
    # only the segmentation network is saved (no projection heads)
    model = load_model(result["model"])
    assert set(model.network.state_dict()) == set(glcnet.build_glcnet(3, 64, **NET).state_dict())
    ckpt = load_checkpoint(result["checkpoint"], PRETRAIN_FORMAT)
    assert ckpt["epoch"] == 3 and ckpt["step"] == 30
    assert any(k.startswith("global_head.") for k in ckpt["objective"])
    # the two kinds of checkpoint are not confused
    with pytest.raises(ModelFileError):
        load_checkpoint(result["checkpoint"])
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_fine_tuning_loads_the_pretrained_encoder(pretrained, tmp_path):
    _, _, result, _ = pretrained
    image, labels = labelled_scene(tmp_path, size=96)
    out = train(images=[str(image)], labels=[str(labels)], out=str(tmp_path / "ft.rsmodel"),
                arch="glcnet", init=result["model"], tile=48, batch_size=4, epochs=1,
                samples_per_epoch=4, lr=1e-12, weight_decay=0.0, device="cpu",
                hparams=dict(NET), val_fraction=0.25)
    card = read_card(out["model"])
    init = card["training"]["init"]
    assert init["skipped_names"] == ["classifier.bias", "classifier.weight"]
    assert init["skipped"] == 2
    pre = load_model(result["model"]).network
    fine = load_model(out["model"]).network
    assert fine.classifier.weight.shape[0] == 3 != pre.classifier.weight.shape[0]
    pre_params = dict(pre.named_parameters())
    for name, value in fine.named_parameters():
        if name.startswith("classifier."):
            continue
        assert torch.allclose(value, pre_params[name], atol=1e-6), name


def test_cancel_leaves_nothing(tmp_path):
    images = _rasters(tmp_path, n=2, size=64)
    out = tmp_path / "c.rsmodel"
    with pytest.raises(Cancelled):
        pt.pretrain(images, "unet", str(out), epochs=2, batch_size=2, crop=32, patch_size=4,
                    patch_num=2, samples_per_epoch=8, device="cpu", hparams=dict(UNET),
                    cancelled=lambda: True)
    assert not out.exists() and not pt.checkpoint_path(out).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unet_pretraining_resume_is_exact(tmp_path):
    images = _rasters(tmp_path, n=2, size=64, seed=1)
    opts = dict(epochs=3, batch_size=3, crop=32, patch_size=4, patch_num=2,
                samples_per_epoch=6, device="cpu", hparams=dict(UNET), lr=1e-2, seed=3)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    straight = pt.pretrain(images, "unet", str(tmp_path / "a" / "m.rsmodel"), **opts)
    assert read_card(straight["model"])["architecture"] == "unet"
    assert read_card(straight["model"])["hparams"]["num_classes"] == 64
    calls = {"n": 0}

    def stop_in_epoch_three():
        calls["n"] += 1
        return calls["n"] > 5            # 2 batches per epoch: stops early in epoch 3

    out_b = tmp_path / "b" / "m.rsmodel"
    with pytest.raises(Cancelled):
        pt.pretrain(images, "unet", str(out_b), cancelled=stop_in_epoch_three, **opts)
    ckpt = pt.checkpoint_path(out_b)
    assert load_checkpoint(ckpt, PRETRAIN_FORMAT)["epoch"] == 2
    assert out_b.exists()                # the best model so far is complete, nothing half-written
    resumed = pt.pretrain(images, "unet", str(out_b), resume=str(ckpt), **opts)
    assert resumed["epochs_run"] == 3 and len(resumed["step_losses"]) == 2
    a = load_checkpoint(pt.checkpoint_path(straight["model"]), PRETRAIN_FORMAT)
    b = load_checkpoint(ckpt, PRETRAIN_FORMAT)
    assert a["step"] == b["step"] == 6
    assert all(torch.equal(a["objective"][k], b["objective"][k]) for k in a["objective"])
    history_a, history_b = json.loads(a["history"]), json.loads(b["history"])
    assert [h["loss"] for h in history_a] == [h["loss"] for h in history_b]


@pytest.mark.parametrize("case", ["none", "bands", "change_arch", "patch", "crop"])
def test_bad_inputs_give_clear_errors(tmp_path, case):
    three = _rasters(tmp_path, n=1, size=64)
    opts = dict(epochs=1, batch_size=2, crop=32, patch_size=4, samples_per_epoch=2,
                device="cpu", hparams=dict(UNET))
    images, arch = three, "unet"
    if case == "none":
        images = []
    elif case == "bands":
        images = three + [str(write_raster(tmp_path / "two.tif",
                                           np.ones((2, 64, 64), np.uint8)))]
    elif case == "change_arch":
        arch, opts["hparams"] = "sgsln", {}
    elif case == "patch":
        opts["patch_size"] = 20
    else:
        opts["crop"] = 30
    with pytest.raises(InputError) as err:
        pt.pretrain(images, arch, str(tmp_path / "x.rsmodel"), **opts)
    assert {"none": "at least one image", "bands": "same number of bands",
            "change_arch": "segmentation network", "patch": "too large",
            "crop": "multiple of 16"}[case] in str(err.value)
    assert not (tmp_path / "x.rsmodel").exists()


def test_command_line_hooks(tmp_path, capsys):
    images = _rasters(tmp_path, n=1, size=64, seed=2)
    parser = argparse.ArgumentParser()
    pt.add_arguments(parser)
    out = tmp_path / "cli.rsmodel"
    args = parser.parse_args(["--image", images[0], "--arch", "unet", "--out", str(out),
                              "--epochs", "2", "--batch-size", "2", "--crop", "32",
                              "--patch-size", "4", "--patch-num", "2", "--samples-per-epoch",
                              "2", "--device", "cpu", "--workers", "1", "--seed", "1",
                              "--hparams", '{"base": 4, "depth": 2}'])
    assert pt.COMMAND == "pretrain" and pt.HELP
    pt.run(args)
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "--init" in printed
    assert read_card(out)["task"] == "pretrained"
