import numpy as np
import pytest
import torch

from engine.jobs import InputError
from engine.training.data import (Scene, SceneReader, WindowDataset, d4, discover_label_classes,
                                  scan_cells, split_cells)
from engine.training.augment import SensorAugment
from engine.training.inputs import ChangeLabelSpec
from engine.training.losses import IGNORE
from tests.conftest import labelled_scene, write_raster


@pytest.fixture
def scene(tmp_path):
    image, labels = labelled_scene(tmp_path)
    return Scene({"image": str(image)}, labels=str(labels))


def test_classes_come_from_the_label_raster(scene):
    spec = discover_label_classes([scene], ignore_value=None)
    assert [c["value"] for c in spec.classes] == [1, 2, 3]
    spec = discover_label_classes([scene], ignore_value=1)
    assert [c["value"] for c in spec.classes] == [2, 3]


def test_split_never_leaks_training_windows_into_validation_cells(scene):
    spec = discover_label_classes([scene], None)
    reader = SceneReader(scene, spec)
    cells = scan_cells([reader], 32, 3)
    train, val = split_cells(cells, 0.3, seed=1)
    assert len(val) == round(0.3 * len(cells)) and len(train) + len(val) == len(cells)
    assert not {(c.x, c.y) for c in train} & {(c.x, c.y) for c in val}
    ds = WindowDataset([scene], spec, train, 32, {"image": ([0] * 3, [1] * 3)}, train=True,
                       length=200, seed=0, val_cells=val)
    rng = np.random.default_rng(0)
    for _ in range(300):
        c = train[rng.integers(len(train))]
        x, y = ds._jitter(c, rng)
        assert 0 <= x <= reader.width - 32 and 0 <= y <= reader.height - 32
        for v in val:
            assert abs(v.x - x) >= 32 or abs(v.y - y) >= 32, "window overlaps a validation cell"


def test_epochs_are_reproducible_and_differ(scene):
    spec = discover_label_classes([scene], None)
    cells = scan_cells([SceneReader(scene, spec)], 32, 3)
    mk = lambda: WindowDataset([scene], spec, cells, 32, {"image": ([0] * 3, [1] * 3)},  # noqa
                               train=True, length=4, seed=3)
    a, b = mk(), mk()
    assert all((a[i]["image"] == b[i]["image"]).all() for i in range(4))
    b.set_epoch(1)
    assert not all((a[i]["image"] == b[i]["image"]).all() for i in range(4))


def test_augmentation_moves_images_and_labels_together():
    img = np.arange(2 * 5 * 5, dtype=np.float32).reshape(2, 5, 5)
    lab = (img[0] % 7).astype(np.uint8)
    for k in range(4):
        for flip in (False, True):
            a, l = d4([img, lab], k, flip)
            assert (l == (a[0] % 7)).all()


def test_validation_windows_are_fixed_and_unaugmented(scene):
    spec = discover_label_classes([scene], None)
    reader = SceneReader(scene, spec)
    cells = scan_cells([reader], 32, 3)
    ds = WindowDataset([scene], spec, cells[:3], 32, {"image": ([0] * 3, [1] * 3)}, train=False)
    item = ds[1]
    raw, lab = reader.read(cells[1].x, cells[1].y, 32)
    assert (item["image"].numpy() == raw["image"]).all() and (item["target"].numpy() == lab).all()


def test_labels_in_another_crs_and_grid_are_aligned(tmp_path):
    image, labels = labelled_scene(tmp_path, size=64)
    import rasterio
    from rasterio.warp import reproject, Resampling, calculate_default_transform
    with rasterio.open(labels) as src:
        tr, w, h = calculate_default_transform(src.crs, "EPSG:3857", src.width, src.height,
                                               *src.bounds)
        dst = np.zeros((h, w), np.uint8)
        reproject(src.read(1), dst, src_transform=src.transform, src_crs=src.crs,
                  dst_transform=tr, dst_crs="EPSG:3857", resampling=Resampling.nearest)
        original = src.read(1)
    moved = tmp_path / "labels_3857.tif"
    with rasterio.open(moved, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8",
                       crs="EPSG:3857", transform=tr) as d:
        d.write(dst[None])
    scene = Scene({"image": str(image)}, labels=str(moved))
    spec = discover_label_classes([scene], None)
    got = SceneReader(scene, spec).read(0, 0, 64)[1]
    lut = spec.lut()
    inner = (slice(4, -4), slice(4, -4))
    assert (got[inner] == lut[original][inner]).mean() > 0.95


def test_change_labels_map_any_nonzero_to_change():
    lut = ChangeLabelSpec(classes=[], ignore_value=None).lut()
    assert lut[0] == 0 and lut[1] == 1 and lut[255] == 1
    assert ChangeLabelSpec(classes=[], ignore_value=9).lut()[9] == IGNORE


def test_bad_label_inputs(tmp_path, rng):
    image, labels = labelled_scene(tmp_path, size=64)
    far = write_raster(tmp_path / "far.tif", np.ones((1, 64, 64), np.uint8) * 2,
                       origin=(900000.0, 1000000.0))
    scene = Scene({"image": str(image)}, labels=str(far))
    spec = discover_label_classes([Scene({"image": str(image)}, labels=str(labels))], None)
    with pytest.raises(InputError, match="does not overlap"):
        SceneReader(scene, spec)
    one = write_raster(tmp_path / "one.tif", np.ones((1, 64, 64), np.uint8) * 2)
    with pytest.raises(InputError, match="at least two classes"):
        discover_label_classes([Scene({"image": str(image)}, labels=str(one))], None)
    zeros = write_raster(tmp_path / "zeros.tif", np.zeros((1, 64, 64), np.uint8))
    with pytest.raises(InputError, match="no labelled pixels"):
        scan_cells([SceneReader(Scene({"image": str(image)}, labels=str(zeros)), spec)], 32, 3)
    with pytest.raises(InputError, match="smaller than the training tile"):
        scan_cells([SceneReader(Scene({"image": str(image)}, labels=str(labels)), spec)], 128, 3)


def test_colour_jitter_changes_each_date_differently_and_keeps_labels(tmp_path):
    scene, spec, cells, stats = _same_dates(tmp_path)
    plain = WindowDataset([scene], spec, cells, 32, stats, train=True, length=2, augment=False)
    jit = WindowDataset([scene], spec, cells, 32, stats, train=True, length=2, augment=False,
                        color_jitter=0.3)
    p, j = plain[0], jit[0]
    assert torch.equal(p["t1"], p["t2"])  # identical dates without jitter
    assert not torch.equal(j["t1"], j["t2"])  # each date gets its own radiometry
    assert torch.equal(p["target"], j["target"])


def _same_dates(tmp_path):
    """A change scene whose two dates are the same image: any difference between them is
    augmentation."""
    rng = np.random.default_rng(0)
    img = rng.integers(50, 200, (3, 64, 64)).astype(np.uint8)
    a = write_raster(tmp_path / "a.tif", img)
    b = write_raster(tmp_path / "b.tif", img)
    lab = write_raster(tmp_path / "l.tif", (rng.random((1, 64, 64)) < 0.3).astype(np.uint8))
    scene = Scene({"t1": str(a), "t2": str(b)}, labels=str(lab))
    spec = ChangeLabelSpec(classes=[], ignore_value=None)
    cells = scan_cells([SceneReader(scene, spec)], 32, 2)
    return scene, spec, cells, {"t1": ([120.0] * 3, [40.0] * 3), "t2": ([120.0] * 3, [40.0] * 3)}


def test_sensor_shift_probability_leaves_that_share_of_windows_as_they_are(tmp_path):
    scene, spec, cells, stats = _same_dates(tmp_path)
    def shifted(p: float) -> int:
        ds = WindowDataset([scene], spec, cells, 32, stats, train=True, length=60, augment=False,
                           sensor=SensorAugment(scale_p=0.0, shift_p=p))
        return sum(not torch.equal(w["t1"], w["t2"]) for w in map(ds.__getitem__, range(60)))

    assert shifted(1.0) == 60
    assert shifted(0.0) == 0
    assert 15 <= shifted(0.5) <= 45


def test_sensor_augmentation_is_left_out_of_the_in_domain_epochs(tmp_path):
    scene, spec, cells, stats = _same_dates(tmp_path)
    ds = WindowDataset([scene], spec, cells, 32, stats, train=True, length=8, augment=False,
                       sensor=SensorAugment(share=0.5))
    ds.set_epoch(3, sensor=True)
    assert any(not torch.equal(w["t1"], w["t2"]) for w in map(ds.__getitem__, range(8)))
    ds.set_epoch(3, sensor=False)
    assert all(torch.equal(w["t1"], w["t2"]) for w in map(ds.__getitem__, range(8)))
    assert [SensorAugment(share=s).epochs(10) for s in (1.0, 0.7, 0.05, 0.0)] == [10, 7, 1, 1]


def test_runs_with_and_without_sensor_augmentation_draw_the_same_windows(scene):
    # paired comparisons: only the radiometry may differ, not which windows and flips are seen
    spec = discover_label_classes([scene], None)
    cells = scan_cells([SceneReader(scene, spec)], 32, 3)
    stats = {"image": ([120.0] * 3, [40.0] * 3)}
    def windows(sensor):
        ds = WindowDataset([scene], spec, cells, 32, stats, train=True, length=12, seed=3,
                           sensor=sensor)
        return [ds[i] for i in range(12)]

    plain, shifted = windows(None), windows(SensorAugment(scale_p=0.0, shift_p=1.0))
    assert all(torch.equal(a["target"], b["target"]) for a, b in zip(plain, shifted))
    assert all(not torch.equal(a["image"], b["image"]) for a, b in zip(plain, shifted))


def test_a_crop_is_normalised_as_its_whole_image(tmp_path):
    """Refine trains on a crop of the analyst's image and predicts it with the whole image's
    statistics; training must standardise the crop the same way, not by its own statistics."""
    from rasterio.windows import Window
    from engine.io.crop import crop_vrt
    rng = np.random.default_rng(0)
    pixels = np.empty((3, 64, 64), np.uint8)
    pixels[:, :, :32] = rng.integers(0, 100, (3, 64, 32))  # the crop: the dark half
    pixels[:, :, 32:] = rng.integers(150, 255, (3, 64, 32))
    image = write_raster(tmp_path / "image.tif", pixels)
    labels = write_raster(tmp_path / "labels.tif", (pixels[:1] > 128).astype(np.uint8) + 1)
    crop = crop_vrt(image, Window(0, 0, 32, 64), tmp_path / "crop.vrt")
    spec = discover_label_classes([Scene({"image": str(image)}, labels=str(labels))], None)
    whole = SceneReader(Scene({"image": str(image)}, labels=str(labels)), spec, "image")
    alone = SceneReader(Scene({"image": str(crop)}), spec, "image")
    as_whole = SceneReader(Scene({"image": str(crop)}, statistics_from=str(image)), spec, "image")
    raw = whole.read(0, 0, 32)[0]["image"]
    expected = whole.pre_transform("image", raw)
    np.testing.assert_allclose(as_whole.pre_transform("image", raw), expected, rtol=1e-6)
    assert abs(alone.pre_transform("image", raw).mean() - expected.mean()) > 0.5


def test_segmentation_draws_windows_by_rare_classes_unless_told():
    import argparse
    from engine.training.cli import add_arguments
    from engine.training.config import TrainConfig, balanced_sampling
    seg = TrainConfig(out="m.rsmodel", images=["a.tif"])
    assert balanced_sampling(seg) is True
    assert balanced_sampling(TrainConfig(out="m.rsmodel", images=["a.tif"], task="change")) is False
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for flags, expected in (([], True), (["--no-balanced"], False), (["--balanced"], True)):
        args = parser.parse_args(["--image", "a.tif", "--out", "m.rsmodel", *flags])
        cfg = TrainConfig(out="m.rsmodel", images=args.images, balanced=args.balanced)
        assert balanced_sampling(cfg) is expected


def test_labels_in_the_strip_beyond_the_last_whole_cell_train(tmp_path, rng):
    """A 90×70 scene in cells of 32: labels only in the last 6 rows and 26 columns (past the
    grid's whole cells) still make a cell, flush with the far edges; and it trains."""
    image = write_raster(tmp_path / "i.tif", rng.integers(0, 255, (3, 70, 90), dtype=np.uint8))
    lab = np.zeros((1, 70, 90), np.uint8)
    lab[0, 64:, 64:77] = 2
    lab[0, 64:, 77:] = 3
    labels = write_raster(tmp_path / "l.tif", lab, nodata=0)
    scene = Scene({"image": str(image)}, labels=str(labels))
    spec = discover_label_classes([scene], None)
    [cell] = scan_cells([SceneReader(scene, spec)], 32, len(spec.classes))
    assert (cell.x, cell.y) == (58, 38) and cell.labelled == 6 * 26
    windows = WindowDataset([scene], spec, [cell], 32, {"image": ([0] * 3, [1] * 3)}, train=True,
                            length=4)
    assert all((windows[i]["target"] != IGNORE).any() for i in range(4))
