"""Which bands a training run reads: ``--bands``, and a sentence whenever a band flagged alpha
(the NIR band of ISPRS RGBIR tiles) is used as a mask or read as data."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp

from engine.formats.modelfile import read_card
from engine.jobs import InputError
from engine.training import train
from tests.conftest import labelled_scene, write_raster


@pytest.fixture
def rgbir(tmp_path):
    """A 4-band tile whose 4th band (NIR) GDAL flags as alpha (photometric RGB + extra sample)."""
    image, labels = labelled_scene(tmp_path, size=96)
    with rasterio.open(image) as ds:
        rgb = ds.read()
    nir = (255 - rgb[1:2]).astype(np.uint8)
    path = write_raster(tmp_path / "rgbir.tif", np.concatenate([rgb, nir]), res=1.0,
                        photometric="RGB")
    with rasterio.open(path, "r+") as ds:
        ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    with rasterio.open(path) as ds:
        assert ds.colorinterp[3] == ColorInterp.alpha
    return path, labels


def _train(tmp_path, image, labels, **kw):
    logs = []
    result = train(images=[str(image)], labels=[str(labels)], out=str(tmp_path / "m.rsmodel"),
                   tile=32, batch_size=4, epochs=1, samples_per_epoch=8, device="cpu",
                   hparams={"base": 4, "depth": 2}, progress=lambda f, m: logs.append(m), **kw)
    return result, [m for m in logs if "alpha" in m]


def test_a_band_flagged_alpha_is_a_mask_and_training_says_so(tmp_path, rgbir):
    _, notes = _train(tmp_path, *rgbir)
    card = read_card(tmp_path / "m.rsmodel")
    assert len(card["inputs"]["image"]["bands"]) == 3
    assert notes == ["rgbir.tif: band 4 is flagged as alpha, so it is used as a mask (transparent "
                     "where 0), not as data; if it holds data (e.g. NIR), choose it with --bands "
                     "1,2,3,4"]


def test_bands_choose_the_alpha_flagged_band_as_data(tmp_path, rgbir):
    _, notes = _train(tmp_path, *rgbir, bands=[1, 2, 3, 4])
    card = read_card(tmp_path / "m.rsmodel")
    assert len(card["inputs"]["image"]["bands"]) == 4 and card["hparams"]["in_channels"] == 4
    assert notes == ["rgbir.tif: band 4 is flagged as alpha but read as data; pixels are masked "
                     "by the nodata value only"]


def test_bands_pick_and_order_the_bands(tmp_path, rgbir):
    _train(tmp_path, *rgbir, bands=[4, 1])
    card = read_card(tmp_path / "m.rsmodel")
    assert card["hparams"]["in_channels"] == 2 and len(card["inputs"]["image"]["bands"]) == 2


def test_a_band_that_does_not_exist_is_a_sentence(tmp_path, rgbir):
    with pytest.raises(InputError, match=r"--bands 1,2,5: band\(s\) 5 do not exist in .*rgbir.tif "
                                         r"\(4 bands\)"):
        _train(tmp_path, *rgbir, bands=[1, 2, 5])
    assert not (tmp_path / "m.rsmodel").exists()


def _colour_labels(tmp_path, labels, table):
    """``labels`` (class values 1..3) drawn in the colours of ``table``, with a black border
    (a colour outside the table, like ISPRS's eroded boundaries)."""
    with rasterio.open(labels) as ds:
        values = ds.read(1)
    rgb = np.zeros((3,) + values.shape, np.uint8)
    for c in table:
        rgb[:, values == c["value"]] = np.array(c["color"], np.uint8)[:, None]
    rgb[:, :4, :] = 0
    return write_raster(tmp_path / "colours.tif", rgb, res=1.0, photometric="RGB")


def test_colour_coded_labels_train_with_the_colour_table_in_the_card(tmp_path):
    from engine.io.label_colours import read_colour_table
    image, labels = labelled_scene(tmp_path, size=96)
    table_file = tmp_path / "colours.txt"
    table_file.write_text("200,200,200,ground\n255,0,0,roof\n0,128,0,field\n")
    table = read_colour_table(str(table_file))
    coloured = _colour_labels(tmp_path, labels, table)
    logs = []
    train(images=[str(image)], labels=[str(coloured)], label_colours=str(table_file),
          out=str(tmp_path / "m.rsmodel"), tile=32, batch_size=4, epochs=1, samples_per_epoch=8,
          device="cpu", hparams={"base": 4, "depth": 2}, progress=lambda f, m: logs.append(m))
    card = read_card(tmp_path / "m.rsmodel")
    assert [(c["name"], c["color"]) for c in card["classes"]] == \
        [("ground", [200, 200, 200]), ("roof", [255, 0, 0]), ("field", [0, 128, 0])]
    share = 4 / 96 * 100
    assert f"colours.tif: {share:.1f} % of the pixels have colours outside the table (#000000); " \
           f"they are not trained on" in logs


def test_colour_labels_without_the_option_say_how(tmp_path):
    image, labels = labelled_scene(tmp_path, size=64)
    from engine.io.label_colours import read_colour_table
    coloured = _colour_labels(tmp_path, labels, read_colour_table("isprs"))
    with pytest.raises(InputError, match="give --label-colours isprs or a colour table file"):
        train(images=[str(image)], labels=[str(coloured)], out=str(tmp_path / "m.rsmodel"),
              tile=32, epochs=1, device="cpu")
    with pytest.raises(InputError, match=r"none of the colours of .*colours.tif is in the colour "
                                         r"table .*t.txt \(it has #"):
        (tmp_path / "t.txt").write_text("1,2,3,a\n4,5,6,b\n")
        train(images=[str(image)], labels=[str(coloured)], label_colours=str(tmp_path / "t.txt"),
              out=str(tmp_path / "m.rsmodel"), tile=32, epochs=1, device="cpu")
    assert not (tmp_path / "m.rsmodel").exists()


def test_the_training_tile_shrinks_to_fit_the_smallest_image():
    from engine.training.config import TrainConfig
    from engine.training.inputs import fit_tile
    cfg = TrainConfig(out="m.rsmodel", images=["a.png"], tile=256, gsd=0.554)
    # 256² chips at 0.5 m read at a base model's 0.554 m: 284 input px would not fit
    fitted, read, note = fit_tile(cfg, [(256, 256), (300, 280)], 284, 32)
    assert (fitted.tile, read) == (224, 248)  # 224 × 284/256 input px
    assert note.startswith("training tile 224 px instead of 256: the smallest image is 256 px")
    same, read, note = fit_tile(cfg, [(512, 400)], 284, 32)
    assert same is cfg and read == 284 and note is None
    with pytest.raises(InputError, match="the smallest training image is 12 px across"):
        fit_tile(cfg, [(12, 40)], 284, 32)
