import numpy as np
import pytest
import rasterio
import torch

from engine.formats.overrides import definition_of, load_defined
from engine.inference.pipeline import PROBABILITY_SCALE, predict
from engine.io.rasters import normalise
from engine.jobs import Cancelled, DeviceError, InputError, ModelFileError, OutputError
from engine.formats.modelfile import load_model
from tests.conftest import make_model, write_raster


def whole_image_probs(model_path, path):
    """Reference: one forward pass over the whole (normalised) raster."""
    m = load_model(model_path)
    img = m.card["inputs"]["image"]
    with rasterio.open(path) as ds:
        px = ds.read(out_dtype="float32")
        valid = ds.dataset_mask() > 0
    x = torch.from_numpy(normalise(px, valid, img["mean"], img["std"]))[None]
    with torch.inference_mode():
        return torch.softmax(m.network(image=x), 1)[0].numpy(), m.card


def test_equals_whole_image_forward_when_raster_fits_one_window(tmp_path, rng):
    img = write_raster(tmp_path / "in.tif", rng.integers(0, 255, (4, 64, 64), dtype=np.uint8))
    model = make_model(tmp_path / "m.rsmodel", base=4, depth=2, tile=64, overlap=16)
    out, prob = tmp_path / "out.tif", tmp_path / "p.tif"
    predict(model, img, out, probabilities=prob, device="cpu")
    ref, card = whole_image_probs(model, img)
    values = np.array([c["value"] for c in card["classes"]])
    with rasterio.open(out) as o:
        assert (o.read(1) == values[ref.argmax(0)]).all()
    with rasterio.open(prob) as p:
        assert np.abs(p.read() / PROBABILITY_SCALE - ref).max() <= 0.5 / PROBABILITY_SCALE + 1e-6


@pytest.mark.parametrize("shape,tile,overlap", [((3, 150, 230), 64, 16), ((3, 40, 50), 64, 8),
                                                ((3, 300, 70), 32, 12)])
def test_sliding_window_has_no_seams_or_edge_effects(tmp_path, rng, shape, tile, overlap):
    """A pointwise network's sliding-window result equals its whole-image result everywhere,
    including raster edges and rasters smaller than one tile."""
    img = write_raster(tmp_path / "in.tif", rng.integers(0, 255, shape, dtype=np.uint8))
    model = make_model(tmp_path / "m.rsmodel", arch="test-pointwise", bands=3, classes=5,
                       tile=tile, overlap=overlap)
    prob = tmp_path / "p.tif"
    predict(model, img, tmp_path / "out.tif", probabilities=prob, device="cpu", batch_size=3)
    ref, _ = whole_image_probs(model, img)
    with rasterio.open(prob) as p:
        got = p.read() / PROBABILITY_SCALE
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 0.5 / PROBABILITY_SCALE + 1e-6


def test_nodata_crs_and_transform_propagate(tmp_path, rng, unet_model):
    data = rng.integers(1, 255, (4, 100, 120), dtype=np.uint8)
    data[:, 10:30, 5:50] = 0
    img = write_raster(tmp_path / "in.tif", data, nodata=0, crs="EPSG:3035",
                       origin=(4321000.0, 3210000.0), res=2.0)
    out = tmp_path / "out.tif"
    predict(unet_model, img, out, device="cpu", tile=64, overlap=16)
    with rasterio.open(img) as i, rasterio.open(out) as o:
        assert o.crs == i.crs and o.transform == i.transform and o.shape == i.shape
        classes = o.read(1)
        assert o.nodata == 255
        assert (classes[10:30, 5:50] == 255).all()
        assert (classes[data.any(0)] != 255).all()
        assert o.profile["compress"] == "deflate"
        cmap = o.colormap(1)
        assert cmap[2][:3] == (0, 0, 255) and o.tags(1)["CLASS_2"] == "building"


def test_float_raster_with_nan_holes_and_int16(tmp_path, rng):
    data = rng.normal(100, 20, (2, 80, 90)).astype("float32")
    data[0, :5, :5] = np.nan
    img = write_raster(tmp_path / "f.tif", data)
    model = make_model(tmp_path / "m.rsmodel", bands=2, classes=3, base=4, depth=2)
    out = tmp_path / "out.tif"
    predict(model, img, out, device="cpu")
    with rasterio.open(out) as o:
        c = o.read(1)
        assert (c[:5, :5] == 255).all() and (c[5:, 5:] != 255).all()
    img16 = write_raster(tmp_path / "i16.tif", rng.integers(-500, 3000, (2, 70, 70)).astype("int16"))
    # an 8-bit model on 12-bit values would give one class: the range guard says how to rescale
    with pytest.raises(InputError, match="12× brighter.*give --input-scale 4095"):
        predict(model, img16, tmp_path / "o16.tif", device="cpu")
    assert not (tmp_path / "o16.tif").exists()
    rescaled = load_defined(model, "cpu", definition_of(input_scale=4095))
    predict(rescaled, img16, tmp_path / "o16.tif", device="cpu")
    assert (tmp_path / "o16.tif").exists()


def test_band_selection_picks_explicit_bands(tmp_path, rng, unet_model):
    img = write_raster(tmp_path / "six.tif", rng.integers(0, 255, (6, 64, 64), dtype=np.uint8))
    with pytest.raises(InputError, match="model expects 4 bands"):
        predict(unet_model, img, tmp_path / "o.tif", device="cpu")
    predict(unet_model, img, tmp_path / "o.tif", device="cpu", bands=[3, 2, 1, 4])
    assert (tmp_path / "o.tif").exists()


# ---- bad input: a clear error and nothing written -------------------------------------------

def _nothing_written(folder, name="out.tif"):
    return not (folder / name).exists() and not list(folder.glob(".out.tif.*"))


def test_missing_input(tmp_path, unet_model):
    with pytest.raises(InputError, match="does not exist"):
        predict(unet_model, tmp_path / "nope.tif", tmp_path / "out.tif", device="cpu")
    assert _nothing_written(tmp_path)


def test_not_a_raster(tmp_path, unet_model):
    bad = tmp_path / "notes.tif"
    bad.write_text("hello")
    with pytest.raises(InputError, match="not a raster"):
        predict(unet_model, bad, tmp_path / "out.tif", device="cpu")
    assert _nothing_written(tmp_path)


def test_band_count_mismatch_names_the_bands(tmp_path, rng, unet_model):
    img = write_raster(tmp_path / "rgb.tif", rng.integers(0, 255, (3, 64, 64), dtype=np.uint8))
    with pytest.raises(InputError, match=r"model expects 4 bands \(R,G,B,NIR\); the input has 3"):
        predict(unet_model, img, tmp_path / "out.tif", device="cpu")
    assert _nothing_written(tmp_path)


def test_tile_not_larger_than_twice_overlap(tmp_path, image4, unet_model):
    with pytest.raises(InputError, match="twice the overlap"):
        predict(unet_model, image4, tmp_path / "out.tif", device="cpu", tile=64, overlap=32)
    assert _nothing_written(tmp_path)


def test_unwritable_output_folder(tmp_path, image4, unet_model):
    with pytest.raises(OutputError, match="does not exist"):
        predict(unet_model, image4, tmp_path / "missing" / "out.tif", device="cpu")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        import os
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that can write anywhere (root)")
        with pytest.raises(OutputError, match="not writable"):
            predict(unet_model, image4, ro / "out.tif", device="cpu")
    finally:
        ro.chmod(0o700)


def test_unwritable_output_folder_even_as_root(tmp_path, image4, unet_model):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError):
        predict(unet_model, image4, blocker / "out.tif", device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_sentence(tmp_path, image4, unet_model):
    with pytest.raises(DeviceError, match="CUDA is not available"):
        predict(unet_model, image4, tmp_path / "out.tif", device="cuda")
    assert _nothing_written(tmp_path)


def test_cancel_leaves_no_output(tmp_path, image4, unet_model):
    calls = {"n": 0}

    def cancelled():
        calls["n"] += 1
        return calls["n"] > 1

    with pytest.raises(Cancelled):
        predict(unet_model, image4, tmp_path / "out.tif", probabilities=tmp_path / "p.tif",
                device="cpu", batch_size=1, cancelled=cancelled)
    assert _nothing_written(tmp_path) and not (tmp_path / "p.tif").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_keyboard_interrupt_leaves_no_output(tmp_path, image4, unet_model):
    def progress(fraction, message):
        if fraction > 0.3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict(unet_model, image4, tmp_path / "out.tif", device="cpu", batch_size=1,
                progress=progress)
    assert _nothing_written(tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_change_model_refused_for_segmentation(tmp_path, image4):
    change = make_model(tmp_path / "cd.rsmodel", arch="fcsiamdiff", bands=4, classes=2, base=4,
                        depth=2)
    with pytest.raises(ModelFileError, match="change model"):
        predict(change, image4, tmp_path / "out.tif", device="cpu")
    assert _nothing_written(tmp_path)


def test_progress_reaches_one_and_is_monotonic(tmp_path, image4, unet_model):
    seen = []
    predict(unet_model, image4, tmp_path / "out.tif", device="cpu",
            progress=lambda f, m: seen.append(f))
    fractions = [f for f in seen if f >= 0]
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)


def test_aux_in_another_crs_and_resolution_lands_on_the_image_grid(tmp_path, rng):
    """A known pattern in a DSM stored in EPSG:3857 at another resolution is read back on the
    image grid at the right place."""
    import contextlib
    import subprocess
    from engine.formats.card import default_card
    from engine.inference.pipeline import open_sources
    img = write_raster(tmp_path / "img.tif", rng.integers(0, 255, (3, 120, 120), dtype=np.uint8))
    pattern = np.zeros((1, 120, 120), np.float32)
    pattern[0, 30:60, 70:100] = 25.0  # a "building"
    dsm = write_raster(tmp_path / "dsm.tif", pattern)
    moved = tmp_path / "dsm_3857.tif"
    subprocess.run(["gdalwarp", "-q", "-t_srs", "EPSG:3857", "-tr", "0.3", "0.3", "-r", "near",
                    str(dsm), str(moved)], check=True)
    card = default_card("unet", 3, 2)
    card["inputs"]["aux"] = {"bands": [{"index": 1, "name": "DSM"}], "dtype": "float32",
                             "mean": [0.0], "std": [1.0], "nodata": None}
    with contextlib.ExitStack() as stack:
        ds = stack.enter_context(rasterio.open(img))
        sources = open_sources(card, ds, moved, None, stack)
        aux = sources[1].reader.read(0, 0, 120).pixels[0]
    inside, outside = aux[35:55, 75:95], np.r_[aux[:25].ravel(), aux[65:].ravel()]
    assert inside.mean() > 24 and outside.max() < 1
    edge_cols = (aux[45] > 12.5).nonzero()[0]
    assert abs(edge_cols.min() - 70) <= 1 and abs(edge_cols.max() - 99) <= 1
