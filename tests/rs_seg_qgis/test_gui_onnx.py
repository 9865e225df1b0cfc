"""ONNX in the Models tab: .onnx files are models (listed, imported), and Export ONNX… writes a
file the pickers then accept."""
from __future__ import annotations

import pytest
from qgis.core import Qgis

from rs_seg_qgis import settings
from rs_seg_qgis.gui import model_manager as mm
from rs_seg_qgis.gui.model_export import ExportUnavailable, export_onnx
from rs_seg_qgis.tasks import running_tasks, wait_for
from tests.conftest import make_model

pytestmark = pytest.mark.qgis


def test_exported_onnx_is_listed_and_imported_as_a_model(qgis_app, tmp_path):
    model = make_model(tmp_path / "roofs.rsmodel", bands=4, classes=3, base=4, depth=2, tile=64,
                       overlap=16)
    onnx_path = export_onnx(model, tmp_path / "roofs.onnx")
    folder = tmp_path / "models"
    target = mm.import_model(onnx_path, folder)
    assert target == folder / "roofs.onnx"
    listed = mm.list_models(folder, task="segmentation")
    assert [e.path for e in listed] == [target] and listed[0].card["onnx"]["source"] == "rs_seg"
    assert listed[0].card["classes"] == mm.read_entry(model).card["classes"]


def test_export_failure_is_a_sentence(qgis_app, tmp_path):
    with pytest.raises(ExportUnavailable, match="not available for missing.rsmodel: .*does not "
                                                "exist"):
        export_onnx(tmp_path / "missing.rsmodel", tmp_path / "x.onnx")


def test_models_tab_export_button_calls_the_engine(qgis_iface, tmp_path):
    from rs_seg_qgis.gui.models_tab import ModelsTab
    settings.set_models_folder(tmp_path / "models")
    try:
        model = make_model(tmp_path / "m.rsmodel", bands=4, classes=3, base=4, depth=2,
                           tile=64, overlap=16)
        tab = ModelsTab(qgis_iface)
        qgis_iface.messageBar().clear_messages()
        tab.export(str(model), str(tmp_path / "m.onnx"))
        assert wait_for(lambda: running_tasks() == 0, 60)
        assert any("Exported m.rsmodel" in m
                   for m in qgis_iface.messageBar().get_messages(Qgis.Success))
        assert mm.read_entry(tmp_path / "m.onnx").card["task"] == "segmentation"
    finally:
        settings.set_models_folder("")
