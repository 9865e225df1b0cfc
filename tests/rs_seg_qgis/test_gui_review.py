"""The Review tab: unsure places → review → corrections → fine-tune and re-predict, with the
round's score in the tab."""
from __future__ import annotations

import shutil

import pytest
from qgis.core import (QgsFeature, QgsGeometry, QgsPointXY, QgsProject, QgsRasterLayer,
                       QgsRectangle, QgsVectorLayer)
from qgis.PyQt.QtCore import Qt

from engine.formats.modelfile import read_card
from rs_seg_qgis import corrections as fixes
from rs_seg_qgis import settings
from rs_seg_qgis.gui.messages import InputProblem
from rs_seg_qgis.gui.review_tab import next_model_path, score_text
from rs_seg_qgis.tasks import running_tasks, wait_for
from tests.engine.training.refine_helpers import box, scene

from .test_processing import _clear_leaked_frames  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.qgis


def test_next_model_path_counts_rounds_and_never_overwrites(tmp_path):
    assert next_model_path("/m/roads.rsmodel", tmp_path, 1).name == "roads_round1.rsmodel"
    (tmp_path / "roads_round2.rsmodel").write_bytes(b"")
    assert next_model_path("/m/roads_round1.rsmodel", tmp_path, 2).name == \
        "roads_round2_2.rsmodel"


def test_score_text_names_parent_previous_round_and_change():
    card = {"lineage": {"scores": {"held_out": {"accuracy": 0.9},
                                   "previous_round": {"accuracy": 0.8}}}}
    text = score_text({"ROUND": 2, "HELD_OUT_ACCURACY": 0.9, "PARENT_ACCURACY": 0.7,
                       "CHANGED_M2": 1234.0}, card)
    assert text == ("Round 2: held-out accuracy 90.0 % (this round's parent 70.0 %, previous "
                    "round 80.0 %); 1,234 m² changed class.")
    assert "no score this round" in score_text({"ROUND": 1}, {"lineage": {"scores": {}}})
    fresh = {"lineage": {"scores": {}, "start": "fresh", "parent_agreement": 0.031}}
    assert score_text({"ROUND": 1}, fresh).endswith(
        "; trained afresh: the model had 3.1 % of the reviewed pixels right.")


@pytest.fixture
def loop(qgis_iface, qgis_new_project, provider, tmp_path):
    import processing
    image, parent = scene(tmp_path)
    models = tmp_path / "models"
    models.mkdir()
    model = shutil.copy(parent, models / "unet.rsmodel")
    settings.set_models_folder(models)
    seg = processing.run("rs_seg:segment", {"INPUT": str(image), "MODEL": str(model),
                                            "DEVICE": "cpu", "OUTPUT": str(tmp_path / "p0.tif"),
                                            "OUTPUT_UNCERTAINTY": str(tmp_path / "u0.tif")})
    layers = {}
    for key, path in (("image", image), ("classes", seg["OUTPUT"]),
                      ("unsure", seg["OUTPUT_UNCERTAINTY"])):
        layers[key] = QgsRasterLayer(str(path), key)
        QgsProject.instance().addMapLayer(layers[key])
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(layers["image"].crs())
    canvas.setExtent(layers["image"].extent())
    from rs_seg_qgis.gui.dock import RsSegDock
    qgis_iface.messageBar().clear_messages()
    dock = RsSegDock(qgis_iface)
    tab = dock.review
    tab.image.setLayer(layers["image"])
    tab.model.select(str(model))
    tab.prediction.setLayer(layers["classes"])
    tab.uncertainty.setLayer(layers["unsure"])
    yield tab, layers, tmp_path
    wait_for(lambda: running_tasks() == 0, 60)
    dock.deleteLater()
    settings.set_models_folder("")


def test_the_loop_from_the_dock(loop, qgis_iface):
    tab, layers, folder = loop
    corrections = tab.create_corrections()
    assert corrections is not None and (folder / "image_corrections.gpkg").exists()
    setup = corrections.editorWidgetSetup(corrections.fields().indexOf("class"))
    assert setup.type() == "ValueMap" and {"class 1": 1} in setup.config()["map"]

    assert tab.find_places() > 0
    tab.next_place()
    left, bottom, right, top = tab.places.currentItem().data(Qt.UserRole)
    assert qgis_iface.mapCanvas().extent().contains(QgsPointXY((left + right) / 2,
                                                               (bottom + top) / 2))
    tab.mark_reviewed()
    assert tab.reviewed_layer().featureCount() == 1
    assert "reviewed" in tab.places.item(0).text()

    crs = layers["image"].crs()
    for wkt, value in ((box(4, 4, 40, 40), 1), (box(50, 50, 90, 90), 2),
                       (box(4, 50, 40, 90), 1)):
        fixes.add_polygon(corrections, QgsGeometry.fromWkt(wkt), crs, value)
    # a predicted polygon reassigned to class 2 is copied into the corrections
    predicted = QgsVectorLayer(f"Polygon?crs={crs.authid()}", "Class polygons", "memory")
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromWkt(box(50, 4, 90, 40)))
    predicted.dataProvider().addFeatures([feature])
    QgsProject.instance().addMapLayer(predicted)
    predicted.selectAll()
    qgis_iface.setActiveLayer(predicted)
    tab.klass.setCurrentIndex(tab.klass.findData(2))
    assert tab.copy_selected() == 1
    assert corrections.featureCount() == 4
    # the corrections (not yet saved) cover every place left: none is listed again
    assert tab.find_places() == 0
    assert tab.places.item(0).text() == "No unsure place left in this view."

    tab.budget.setMinimum(1)
    tab.budget.setValue(2)
    tab.device.set_value("cpu")
    # re-predict the current extent (the left half of the image) inside the round's layers
    canvas = qgis_iface.mapCanvas()
    whole = layers["image"].extent()
    canvas.setExtent(QgsRectangle(whole.xMinimum(), whole.yMinimum(), whole.center().x(),
                                  whole.yMaximum()))
    assert tab.scope.currentData() == "extent"
    params = tab.parameters()
    assert params["EXTENT"].xMaximum() == pytest.approx(canvas.extent().xMaximum())
    assert params["OUTPUT_MODEL"].endswith("unet_round1.rsmodel")
    assert params["REVIEWED"].endswith("layername=reviewed") and params["PREDICTION"]
    task = tab.run_refine()
    assert task is not None
    assert wait_for(lambda: running_tasks() == 0, 120)
    from qgis.core import QgsApplication
    QgsApplication.processEvents()
    assert tab.score.text().startswith("Round 1: held-out accuracy"), tab.score.text()
    group = QgsProject.instance().layerTreeRoot().findGroup("Round 1")
    names = {n.layer().name() for n in group.findLayers()}
    assert names == {"Classes", "Uncertainty", "Changed class"}
    assert tab.prediction.currentLayer().name() == "Classes"
    assert tab.model.path() == params["OUTPUT_MODEL"]
    assert read_card(params["OUTPUT_MODEL"])["lineage"]["corrections"] == 4
    classes = tab.prediction.currentLayer()
    assert (classes.width(), classes.height()) == (layers["classes"].width(),
                                                   layers["classes"].height())
    changed = [n.layer() for n in group.findLayers() if n.layer().name() == "Changed class"][0]
    assert changed.extent().xMaximum() <= canvas.extent().xMaximum() + 1e-6

    # the whole layer instead; the extent needs the previous round's layers
    tab.scope.setCurrentIndex(tab.scope.findData("layer"))
    assert tab.parameters()["EXTENT"] is None
    tab.scope.setCurrentIndex(tab.scope.findData("extent"))
    tab.uncertainty.setLayer(None)
    with pytest.raises(InputProblem, match="re-predict the whole layer"):
        tab.parameters()


def test_bad_input_goes_to_the_message_bar(loop, qgis_iface):
    from qgis.core import Qgis
    tab, _layers, _folder = loop
    tab.uncertainty.setLayer(None)
    assert tab.find_places() is None
    assert tab.run_refine() is None
    messages = qgis_iface.messageBar().get_messages(Qgis.Warning)
    assert any("uncertainty" in m for m in messages)
    assert any("corrections layer" in m for m in messages)


def test_segment_with_uncertainty_feeds_the_tab(loop):
    from qgis.core import QgsApplication
    tab, _layers, _folder = loop
    tab.prediction.setLayer(None)
    tab.uncertainty.setLayer(None)
    tab.device.set_value("cpu")
    assert tab.run_segment() is not None
    assert wait_for(lambda: running_tasks() == 0, 120)
    QgsApplication.processEvents()
    assert tab.uncertainty.currentLayer().name() == "Uncertainty"
    assert tab.prediction.currentLayer().name() == "Classes"
    assert tab.find_places() > 0


def test_the_list_groups_places_by_the_image_on_the_uncertainty_grid(loop, monkeypatch):
    import engine.analysis.unsure as unsure
    tab, layers, folder = loop
    calls = []
    real = unsure.unsure_places
    monkeypatch.setattr(unsure, "unsure_places",
                        lambda *a, **k: calls.append(k) or real(*a, **k))
    assert tab.find_places() > 0
    assert calls[-1]["image"] == layers["image"].source()
    assert calls[-1]["prediction"] == layers["classes"].source()
    # an image on another grid (here a crop) cannot be read beside the uncertainty: left out
    import rasterio
    from rasterio.windows import Window
    with rasterio.open(layers["image"].source()) as ds:
        profile = dict(ds.profile, width=ds.width // 2, height=ds.height // 2)
        crop = ds.read(window=Window(0, 0, ds.width // 2, ds.height // 2))
    with rasterio.open(folder / "crop.tif", "w", **profile) as dst:
        dst.write(crop)
    other = QgsRasterLayer(str(folder / "crop.tif"), "crop")
    QgsProject.instance().addMapLayer(other)
    tab.image.setLayer(other)
    assert tab.find_places() > 0
    assert calls[-1]["image"] is None
