"""The dock: widget state → Processing parameters, background runs whose results land in a
group named after the run (styled), training that selects its new model, and bad input that
ends in the message bar instead of a traceback."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from qgis.core import (Qgis, QgsApplication, QgsPalettedRasterRenderer, QgsProject,
                       QgsRasterLayer, QgsVectorLayer)

from engine.formats.modelfile import read_card
from rs_seg_qgis import settings
from rs_seg_qgis.tasks import running_tasks, wait_for
from tests.conftest import labelled_scene, make_model, write_raster

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dock")
    rng = np.random.default_rng(3)
    image = write_raster(folder / "t1.tif", rng.integers(0, 255, (4, 64, 64), dtype=np.uint8))
    after = write_raster(folder / "t2.tif", rng.integers(0, 255, (4, 64, 64), dtype=np.uint8))
    unet = make_model(folder / "unet.rsmodel", base=4, depth=2, tile=64, overlap=16)
    rgb = make_model(folder / "rgb.rsmodel", bands=3, classes=2, base=4, depth=2, tile=64,
                     overlap=16)
    change = make_model(folder / "siam.rsmodel", arch="fcsiamdiff", classes=2, tile=64,
                        overlap=16)
    scene = folder / "scene"
    scene.mkdir()
    return {"image": image, "after": after, "unet": unet, "rgb": rgb, "change": change,
            "scene": labelled_scene(scene, size=64)}


@pytest.fixture
def models_dir(tmp_path, data):
    folder = tmp_path / "models"
    folder.mkdir()
    for key in ("unet", "rgb", "change"):
        shutil.copy(data[key], folder)
    settings.set_models_folder(folder)
    yield folder
    settings.set_models_folder("")


@pytest.fixture
def dock(qgis_iface, qgis_new_project, provider, models_dir):
    from rs_seg_qgis.gui.dock import RsSegDock
    qgis_iface.messageBar().clear_messages()
    widget = RsSegDock(qgis_iface)
    yield widget
    wait_for(lambda: running_tasks() == 0, 60)
    widget.deleteLater()


def add_raster(path, name):
    layer = QgsRasterLayer(str(path), name)
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    return layer


def warnings(iface):
    bar = iface.messageBar()
    return bar.get_messages(Qgis.Warning) + bar.get_messages(Qgis.Critical)


def run_and_wait(start):
    task = start()
    assert task is not None, "the run did not start"
    assert wait_for(lambda: running_tasks() == 0, 90), "the run did not finish"
    QgsApplication.processEvents()
    return task


def test_segment_tab_state_becomes_segment_parameters(dock, data, models_dir, tmp_path):
    from rs_seg_qgis.gui.params import segment_parameters
    layer = add_raster(data["image"], "t1")
    tab = dock.segment
    tab.layer.setLayer(layer)
    tab.model.select(str(models_dir / "unet.rsmodel"))
    assert (tab.tiling.tile.value(), tab.tiling.overlap.value()) == (64, 16)  # from the card
    assert not tab.outlines.isEnabled()
    tab.polygons.setChecked(True)
    assert tab.outlines.isEnabled() and "AS_IS" not in segment_parameters(tab.state())
    tab.outlines.setCurrentIndex(tab.outlines.findData("pixel"))
    assert segment_parameters(tab.state())["AS_IS"] == "all"
    tab.outlines.setCurrentIndex(0)
    tab.output_folder.setFilePath(str(tmp_path))
    params = segment_parameters(tab.state())
    assert params["INPUT"] == layer.id() and params["MODEL"] == str(models_dir / "unet.rsmodel")
    assert params["TILE_SIZE"] == 64 and params["OVERLAP"] == 16 and "BATCH_SIZE" not in params
    assert params["OUTPUT"].startswith(str(tmp_path / "t1_unet_"))
    assert params["OUTPUT_VECTOR"].endswith("_classes.gpkg") and "EXTENT" not in params
    assert "BANDS" not in params
    tab.bands.setText(" 3,2,1,4 ")  # what a band error suggests (--bands / BANDS)
    assert segment_parameters(tab.state())["BANDS"] == "3,2,1,4"
    tab.set_drawn_extent(layer.extent(), layer.crs())
    assert tab.state().extent.endswith("[EPSG:32633]")
    models = [tab.model.combo.itemData(i) for i in range(tab.model.combo.count())]
    assert models == [str(models_dir / "rgb.rsmodel"), str(models_dir / "unet.rsmodel")]


def test_segment_run_adds_a_named_group_of_styled_layers(dock, data, models_dir, tmp_path):
    layer = add_raster(data["image"], "t1")
    dock.segment.layer.setLayer(layer)
    dock.segment.model.select(str(models_dir / "unet.rsmodel"))
    dock.segment.device.set_value("cpu")
    dock.segment.polygons.setChecked(True)
    dock.segment.output_folder.setFilePath(str(tmp_path))
    run_and_wait(dock.run_segment)
    assert not warnings(dock.iface), warnings(dock.iface)
    group = QgsProject.instance().layerTreeRoot().children()[0]
    assert group.name().startswith("Segment t1 — unet ")
    layers = {node.layer().name(): node.layer() for node in group.findLayers()}
    assert set(layers) == {"Classes", "Class polygons"}
    renderer = layers["Classes"].renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    classes = read_card(data["unet"])["classes"]
    assert [c.label for c in renderer.classes()] == [c["name"] for c in classes]
    polygons = layers["Class polygons"].renderer()
    assert polygons.type() == "categorizedSymbol" and polygons.classAttribute() == "class_name"
    # pushed after QGIS's own task messages, so that it is the one on top
    assert wait_for(lambda: dock.iface.messageBar().get_messages(Qgis.Success), 5)
    assert "at the top of the layer tree" in \
        dock.iface.messageBar().get_messages(Qgis.Success)[-1]
    assert "✔ Segment t1" in dock.log.toPlainText()


def test_change_run_cva_adds_magenta_change_layer_and_polygons(dock, data, tmp_path):
    dock.change.before.setLayer(add_raster(data["image"], "t1"))
    dock.change.after.setLayer(add_raster(data["after"], "t2"))
    assert dock.change.model.path() == ""  # CVA (no model) is the first choice
    dock.change.output_folder.setFilePath(str(tmp_path))
    run_and_wait(dock.run_change)
    assert not warnings(dock.iface), warnings(dock.iface)
    group = QgsProject.instance().layerTreeRoot().children()[0]
    assert group.name().startswith("Change t1 → t2 — CVA ")
    layers = {node.layer().name(): node.layer() for node in group.findLayers()}
    assert set(layers) == {"Change", "Change polygons"}
    change = [(c.value, c.color.getRgb()) for c in layers["Change"].renderer().classes()]
    assert change == [(0, (0, 0, 0, 0)), (1, (255, 0, 255, 255))]  # unlike any class
    assert layers["Change polygons"].renderer().type() == "singleSymbol"


def test_train_tab_polygon_labels_with_a_bound_class_field(dock, data):
    from rs_seg_qgis.gui.params import train_parameters
    image = add_raster(data["image"], "t1")
    polygons = QgsVectorLayer("Polygon?crs=EPSG:32633&field=name:string&field=class:integer",
                              "labels", "memory")
    QgsProject.instance().addMapLayer(polygons)
    tab = dock.train
    tab.images.set_layer_ids([image.id()])
    tab.polygons.setLayer(polygons)
    assert tab.class_field.layer() is polygons and tab.class_field.currentField() == "class"
    tab.epochs.setValue(2)
    algorithm, params = train_parameters(tab.state())
    assert algorithm == "rs_seg:train_segmentation"
    assert params["INPUT"] == [image.id()] and params["LABEL_POLYGONS"] == polygons.id()
    assert params["CLASS_FIELD"] == "class" and params["EPOCHS"] == 2
    assert params["ARCHITECTURE"] == "unet" and "LABELS" not in params
    tab.task.setCurrentIndex(1)  # change training: architectures of that task, after images
    assert tab.architecture.currentText() == "fcsiamdiff" and tab.images_after.isVisibleTo(tab)


def test_train_tab_shows_the_architecture_a_fine_tune_keeps(dock, models_dir):
    mindist = make_model(models_dir / "mindist.rsmodel", arch="mindist")
    tab = dock.train
    tab.init_model.refresh()
    assert tab.architecture.currentText() == "unet" and tab.architecture.isEnabled()
    tab.init_model.select(str(mindist))
    assert tab.architecture.currentText() == "mindist"
    assert not tab.architecture.isEnabled()
    tab.init_model.select("")
    assert tab.architecture.isEnabled()


def test_train_run_logs_opens_the_report_and_selects_the_new_model(dock, data, models_dir):
    image, labels = data["scene"]
    image_layer, label_layer = add_raster(image, "scene"), add_raster(labels, "labels")
    tab = dock.train
    tab.images.refresh()
    tab.label_rasters.refresh()
    tab.images.set_layer_ids([image_layer.id()])
    tab.label_kind.setCurrentIndex(1)
    tab.label_rasters.set_layer_ids([label_layer.id()])
    tab.architecture.setCurrentText("mindist")  # closed-form fit: a one-pass "training"
    tab.tile.setValue(32)
    tab.epochs.setValue(1)
    tab.device.set_value("cpu")
    state = tab.state()
    assert state.output_model.startswith(str(models_dir / "mindist-"))
    run_and_wait(dock.run_train)
    assert not warnings(dock.iface), warnings(dock.iface)
    assert dock.segment.model.path() == state.output_model  # the new model is selected
    assert read_card(state.output_model)["task"] == "segmentation"
    assert dock.dialogs and dock.dialogs[-1].isVisible()
    assert "val mIoU" in dock.log.toPlainText()


def test_bad_input_goes_to_the_message_bar(dock, data, models_dir):
    bar = dock.iface.messageBar()
    assert dock.run_segment() is None  # no layer in the project
    assert "Choose a raster layer" in warnings(dock.iface)[-1]
    dock.segment.layer.setLayer(add_raster(data["image"], "t1"))
    dock.segment.model.select(str(models_dir / "siam.rsmodel"))  # a change model
    assert dock.run_segment() is None
    assert "is a change model" in warnings(dock.iface)[-1]
    dock.segment.model.select(str(models_dir / "rgb.rsmodel"))  # 3 bands, the layer has 4
    bar.clear_messages()
    run_and_wait(dock.run_segment)
    problems = warnings(dock.iface)
    assert len(problems) == 1 and "band" in problems[0] and "Traceback" not in problems[0]
    assert not [g for g in QgsProject.instance().layerTreeRoot().children()
                if g.name().startswith("Segment")]


def test_cancel_leaves_no_group(dock, data, models_dir, tmp_path):
    dock.segment.layer.setLayer(add_raster(data["image"], "t1"))
    dock.segment.model.select(str(models_dir / "unet.rsmodel"))
    dock.segment.output_folder.setFilePath(str(tmp_path))
    task = dock.run_segment()
    task.cancel()
    assert wait_for(lambda: running_tasks() == 0, 60)
    QgsApplication.processEvents()
    assert "cancelled" in dock.log.toPlainText()
    root = QgsProject.instance().layerTreeRoot()
    assert [node.name() for node in root.children()] == ["t1"]  # no result group
    assert not list(tmp_path.glob("*.tif"))
