import numpy as np
import pytest
import rasterio
import torch

from engine.jobs import InputError
from engine.formats.modelfile import load_model, read_card
from engine.training import train
from engine.training.finetune import FINETUNE_LR_SCALE, class_dependent_keys
from engine.training.config import recipe_of
from tests.conftest import labelled_scene, write_raster

SMALL = {"base": 4, "depth": 2}


@pytest.fixture
def scene(tmp_path):
    return labelled_scene(tmp_path)


def _train(tmp_path, image, labels, name, **kw):
    opts = dict(images=[str(image)], labels=[str(labels)], out=str(tmp_path / name), tile=32,
                batch_size=8, epochs=1, samples_per_epoch=16, device="cpu",
                hparams=dict(SMALL), seed=0)
    opts.update(kw)
    return train(**opts)


def test_fine_tuning_loads_the_base_weights_and_inherits_its_view(tmp_path, scene):
    image, labels = scene
    base = _train(tmp_path, image, labels, "base.rsmodel", normalisation="percentile", gsd=1.0,
                  lr=5e-3)
    tuned = _train(tmp_path, image, labels, "tuned.rsmodel", init=base["model"], lr=1e-12)
    a = load_model(base["model"]).network.state_dict()
    b = load_model(tuned["model"]).network.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a
               if "running" not in k and "num_batches" not in k)
    card = read_card(tuned["model"])
    assert card["inputs"]["image"]["normalisation"] == "percentile"
    assert card["gsd_m"] == 1.0
    assert card["training"]["init"]["loaded"] == len(a)


def test_fine_tuning_defaults_to_a_lower_learning_rate(tmp_path, scene):
    image, labels = scene
    base = _train(tmp_path, image, labels, "base.rsmodel")
    tuned = _train(tmp_path, image, labels, "tuned.rsmodel", init=base["model"])
    hp = read_card(tuned["model"])["training"]["hyper_parameters"]
    assert hp["lr"] == pytest.approx(recipe_of("unet").get("lr", 1e-3) * FINETUNE_LR_SCALE)


def test_other_classes_need_a_new_head(tmp_path, scene):
    image, labels = scene
    base = _train(tmp_path, image, labels, "base.rsmodel")
    swapped = rasterio.open(labels).read()
    swapped = np.where(swapped == 3, 7, swapped).astype(np.uint8)  # class 3 → 7: same count
    other = write_raster(tmp_path / "other.tif", swapped, res=1.0)
    with pytest.raises(InputError, match=r"classes \[1, 2, 3\] but the labels have \[1, 2, 7\]; "
                                         r"add --init-head new"):
        _train(tmp_path, image, other, "x.rsmodel", init=base["model"])
    tuned = _train(tmp_path, image, other, "y.rsmodel", init=base["model"], init_head="new",
                   lr=1e-12)
    init = read_card(tuned["model"])["training"]["init"]
    head = class_dependent_keys("unet", {"in_channels": 3, "num_classes": 3, **SMALL})
    assert init["head"] == "new" and init["skipped"] == len(head) > 0
    a = load_model(base["model"]).network.state_dict()
    b = load_model(tuned["model"]).network.state_dict()
    assert all(not torch.allclose(a[k], b[k]) for k in head)  # same shapes, new values


def test_a_base_model_for_other_bands_is_refused(tmp_path, scene):
    image, labels = scene
    base = _train(tmp_path, image, labels, "base.rsmodel")
    four = write_raster(tmp_path / "four.tif",
                        np.concatenate([rasterio.open(image).read()] * 2)[:4], res=1.0)
    with pytest.raises(InputError, match=r"expects 3 bands \(R,G,B\); the training images have 4"):
        _train(tmp_path, four, labels, "x.rsmodel", init=base["model"])


def _png(path, data):
    c, h, w = data.shape
    with rasterio.open(path, "w", driver="PNG", width=w, height=h, count=c, dtype="uint8") as dst:
        dst.write(data)
    return path


def test_fine_tuning_on_pngs_at_the_base_gsd_needs_input_gsd(tmp_path, scene):
    image, labels = scene
    base = _train(tmp_path, image, labels, "base.rsmodel", gsd=2.0)
    png = _png(tmp_path / "a.png", rasterio.open(image).read())
    png_labels = _png(tmp_path / "a_labels.png", rasterio.open(labels).read())
    with pytest.raises(InputError, match=r"--init model's GSD \(2 m\).*give it with --input-gsd"):
        _train(tmp_path, png, png_labels, "x.rsmodel", init=base["model"])
    tuned = _train(tmp_path, png, png_labels, "tuned.rsmodel", init=base["model"], input_gsd=1.0)
    assert read_card(tuned["model"])["gsd_m"] == 2.0
    native = _train(tmp_path, png, png_labels, "native.rsmodel", input_gsd=1.0)
    assert read_card(native["model"])["gsd_m"] == 1.0


def test_fine_tuning_keeps_the_base_network_without_being_told(tmp_path, scene):
    """As a new user runs it: `train --init BASE` with no --arch or --hparams builds the base
    model's network (an architecture's default sizes would load almost none of its weights)."""
    image, labels = scene
    base = _train(tmp_path, image, labels, "base.rsmodel", hparams={"base": 4, "depth": 3})
    tuned = _train(tmp_path, image, labels, "tuned.rsmodel", init=base["model"], hparams={})
    card = read_card(tuned["model"])
    assert card["architecture"] == "unet" and card["hparams"]["depth"] == 3
    assert card["hparams"] == read_card(base["model"])["hparams"]
    assert card["training"]["init"]["loaded"] == len(load_model(base["model"]).network
                                                     .state_dict())
    with pytest.raises(InputError, match=r"the --init model is a unet network; fine-tuning "
                                         r"keeps its architecture \(leave out --arch"):
        _train(tmp_path, image, labels, "x.rsmodel", init=base["model"], arch="glcnet")
