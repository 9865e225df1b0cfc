"""First hour in the dock: default inputs (imagery, two dates, training polygons), the empty
state of a fresh profile, and a model from the catalogue in two clicks (local HTTP server)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from qgis.core import (QgsApplication, QgsFeature, QgsProject, QgsRasterLayer, QgsSettings,
                       QgsVectorLayer)

from rs_seg_qgis import settings
from rs_seg_qgis.gui import defaults
from rs_seg_qgis.gui.catalogue_panel import CATALOGUE_KEY
from rs_seg_qgis.tasks import running_tasks, wait_for
from tests.conftest import make_model, write_raster
from tests.http_files import FileServer

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def rasters(tmp_path_factory):
    folder = tmp_path_factory.mktemp("defaults")
    rng = np.random.default_rng(5)
    paths = {}
    for name in ("city_2019-05-01", "city_2023-06-30", "other"):
        paths[name] = write_raster(folder / f"{name}.tif",
                                   rng.integers(0, 255, (4, 32, 32), dtype=np.uint8))
    model = make_model(folder / "unet.rsmodel", base=4, depth=2, tile=32, overlap=8)
    return paths, model


def add(path, name):
    layer = QgsRasterLayer(str(path), name)
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    return layer


def polygons(name, field):
    layer = QgsVectorLayer(f"Polygon?crs=EPSG:32633&field={field}:integer", name, "memory")
    layer.dataProvider().addFeature(QgsFeature(layer.fields()))
    QgsProject.instance().addMapLayer(layer)
    return layer


def test_defaults_skip_results_and_pick_two_dates(qgis_new_project, rasters):
    paths, _ = rasters
    old = add(paths["city_2019-05-01"], "city_2019-05-01")
    new = add(paths["city_2023-06-30"], "city_2023-06-30")
    result = add(paths["other"], "Change")
    defaults.mark_output(result)  # added last, on top, but a result
    assert defaults.default_imagery() is new
    assert defaults.date_pair() == (old, new)
    other = add(paths["other"], "after")
    assert defaults.date_pair()[1] is other and defaults.date_pair()[0] is not other
    plain = polygons("labels", "class")
    change = polygons("Change polygons", "class")
    defaults.mark_output(change)
    polygons("roads", "width")  # no class-like field
    assert defaults.training_polygons() is plain
    assert defaults.class_field(plain) == "class"


@pytest.fixture
def empty_models(tmp_path):
    settings.set_models_folder(tmp_path / "models")
    yield tmp_path / "models"
    settings.set_models_folder("")
    QgsSettings().remove(CATALOGUE_KEY)


def test_fresh_profile_says_what_to_do_and_segment_waits_for_a_model(
        qgis_iface, qgis_new_project, provider, rasters, empty_models):
    from rs_seg_qgis.gui.dock import RsSegDock
    paths, model = rasters
    first = add(paths["other"], "ortho")
    dock = RsSegDock(qgis_iface)
    assert dock.segment.layer.currentLayer() is first
    assert not dock.segment.empty.isHidden() and not dock.segment.run.isEnabled()
    assert not dock.models.empty.isHidden() and not dock.models.catalogue_box.isCollapsed()
    dock.segment.get_models.click()
    assert dock.tabs.currentWidget().widget() is dock.models  # in its scroll area
    dock.refresh_models(str(model))
    assert dock.segment.run.isEnabled() and dock.segment.empty.isHidden()
    second = add(paths["city_2023-06-30"], "newer")
    result = add(paths["city_2019-05-01"], "Classes")
    defaults.mark_output(result)
    dock.apply_defaults()
    assert dock.segment.layer.currentLayer() is first  # a choice is kept
    assert dock.change.before.currentLayer() is not dock.change.after.currentLayer()
    assert second in (dock.change.before.currentLayer(), dock.change.after.currentLayer())
    # result polygons are never offered for training; the user's labels are, once added
    result_polygons = QgsVectorLayer("Polygon?crs=EPSG:32633&field=class_value:integer",
                                     "Class polygons", "memory")
    defaults.mark_output(result_polygons)
    QgsProject.instance().addMapLayer(result_polygons)
    assert dock.train.polygons.currentLayer() is None
    labels = polygons("my labels", "landcover")
    assert dock.train.polygons.currentLayer() is labels
    assert dock.train.class_field.currentField() == "landcover"
    dock.deleteLater()


def test_catalogue_download_lands_in_every_picker(qgis_iface, qgis_new_project, provider,
                                                  rasters, empty_models, tmp_path):
    from rs_seg_qgis.gui.dock import RsSegDock
    _, model = rasters
    body = model.read_bytes()
    with FileServer({"/unet.rsmodel": body}) as server:
        catalogue = tmp_path / "org.json"
        catalogue.write_text(json.dumps({"catalogue_version": 1, "models": [
            {"name": "org-unet", "title": "Our land cover", "task": "segmentation",
             "url": server.url("/unet.rsmodel"), "file": "org_unet.rsmodel",
             "classes": ["a", "b"], "bands": ["R", "G", "B", "NIR"],
             "sha256": hashlib.sha256(body).hexdigest(), "licence": "internal"}]}))
        dock = RsSegDock(qgis_iface)
        panel = dock.models.catalogue
        panel.extra.setText(str(catalogue))
        panel.load()
        panel.select("org-unet")
        assert "internal" in panel.details.text() and "SHA-256" in panel.details.text()
        assert panel.start_download() is not None
        assert wait_for(lambda: running_tasks() == 0, 60)
        QgsApplication.processEvents()
    path = str(empty_models / "org_unet.rsmodel")
    assert dock.segment.model.path() == path
    assert dock.models.current_path() == path
    assert dock.change.segmentation.combo.findData(path) >= 0
    assert panel.list.currentItem().text().startswith("✔ ")
    dock.deleteLater()
