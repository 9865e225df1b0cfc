"""Model manager (listing, import, remove, card fields), ONNX export that explains itself, and
the environment diagnostics."""
from __future__ import annotations

import pytest
from qgis.core import Qgis
from qgis.PyQt.QtWidgets import QTableWidget

from rs_seg_qgis import deps, settings
from rs_seg_qgis.gui import model_manager as mm
from rs_seg_qgis.gui.card_dialog import fill_card_table
from rs_seg_qgis.gui.diagnostics import DiagnosticsDialog, diagnostics, report_text
from rs_seg_qgis.gui.messages import InputProblem
from rs_seg_qgis.gui.model_export import ExportUnavailable, export_onnx
from rs_seg_qgis.tasks import running_tasks, wait_for
from tests.conftest import make_model

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo")
    seg = make_model(folder / "buildings.rsmodel", bands=4, classes=3, base=4, depth=2, tile=64,
                     overlap=16)
    change = make_model(folder / "siam.rsmodel", arch="fcsiamdiff", classes=2)
    broken = folder / "broken.rsmodel"
    broken.write_bytes(b"not a model")
    return seg, change, broken


@pytest.fixture
def models_dir(qgis_app, tmp_path):
    folder = tmp_path / "models"
    settings.set_models_folder(folder)
    yield folder
    settings.set_models_folder("")


def test_folder_setting_defaults_to_the_profile(qgis_app, models_dir):
    assert settings.models_folder() == models_dir and models_dir.is_dir()
    settings.set_models_folder("")
    assert settings.models_folder(create=False).name == "rs_seg_models"


def test_import_list_remove(models, tmp_path):
    seg, change, broken = models
    folder = tmp_path / "m"
    copied = mm.import_model(seg, folder)
    mm.import_model(change, folder)
    entries = mm.list_models(folder)
    assert [(e.name, e.task) for e in entries] == [("buildings", "segmentation"),
                                                   ("siam", "change")]
    assert entries[0].label == "buildings — segmentation, unet, 3 classes"
    assert [e.name for e in mm.list_models(folder, "change")] == ["siam"]
    with pytest.raises(InputProblem, match="already in the models folder"):
        mm.import_model(seg, folder)
    with pytest.raises(InputProblem, match="not a usable RS Seg model"):
        mm.import_model(broken, folder)
    curves = mm.curves_path(copied)
    curves.write_bytes(b"png")
    mm.remove_model(copied)
    assert not copied.exists() and not curves.exists()
    assert [e.name for e in mm.list_models(folder)] == ["siam"]


def test_unreadable_file_is_listed_with_its_problem(models, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "broken.rsmodel").write_bytes(models[2].read_bytes())
    [entry] = mm.list_models(folder)
    assert entry.card is None and "not a readable RS Seg model" in entry.error
    with pytest.raises(InputProblem, match="Cannot use model"):
        mm.require_task(str(entry.path), "segmentation")
    with pytest.raises(InputProblem, match="is a change model"):
        mm.require_task(str(models[1]), "segmentation")


def test_card_fields_and_table(qgis_app, models):
    card = mm.read_entry(models[0]).card
    rows = dict(mm.card_rows(card))
    assert rows["Task"] == "segmentation" and rows["Architecture"] == "unet"
    assert rows["Bands (image)"].startswith("4 — 1:R, 2:G, 3:B, 4:NIR")
    assert rows["GSD"] == "unknown" and rows["Tile / overlap"] == "64 / 16 px"
    card = {**card, "gsd_m": 0.3, "training": {"epochs": 5, "best_epoch": 4,
                                               "metrics": {"mIoU": 0.71234,
                                                           "iou": {"road": 0.5}}}}
    rows = dict(mm.card_rows(card))
    assert rows["GSD"] == "0.3 m" and rows["Mean IoU (validation)"] == "0.7123"
    assert rows["IoU per class (validation)"] == "road 0.5" and rows["Epochs"] == "5 (best 4)"
    table = QTableWidget()
    fill_card_table(table, card)
    texts = [table.item(r, 1).text() for r in range(table.rowCount())]
    assert texts[-3:] == [f"{c['value']}  {c['name']}" for c in card["classes"]]
    assert not table.item(table.rowCount() - 1, 1).icon().isNull()  # the colour swatch


def test_models_tab_import_remove_and_card(qgis_iface, models, models_dir):
    from rs_seg_qgis.gui.models_tab import ModelsTab
    answers = []
    tab = ModelsTab(qgis_iface, confirm=lambda q: answers.append(q) or True)
    changed = []
    tab.models_changed.connect(changed.append)
    target = tab.import_file(str(models[0]))
    assert target == models_dir / "buildings.rsmodel" and changed == [str(target)]
    assert tab.list.count() == 1 and tab.current_path() == str(target)
    assert tab.details.item(1, 1).text() == "segmentation"
    dialog = tab.show_card()
    assert dialog.table.rowCount() > 5 and "buildings.rsmodel" in dialog.windowTitle()
    dialog.close()
    assert tab.import_file(str(models[0])) is None  # duplicate: a warning, no exception
    assert "already in the models folder" in \
        qgis_iface.messageBar().get_messages(Qgis.Warning)[-1]
    assert tab.remove_current() is True and "Delete buildings.rsmodel" in answers[0]
    assert tab.list.count() == 0 and not target.exists()


def test_onnx_export_says_when_it_is_not_available(qgis_iface, models, tmp_path):
    out = tmp_path / "m.onnx"
    try:
        export_onnx(models[0], out)
    except ExportUnavailable as exc:
        assert "not available for buildings.rsmodel" in str(exc)
        assert not out.exists() and not (tmp_path / "m.onnx.part").exists()
    else:
        assert out.stat().st_size > 0
    from rs_seg_qgis.gui.models_tab import ModelsTab
    tab = ModelsTab(qgis_iface)
    qgis_iface.messageBar().clear_messages()
    tab.export(str(models[0]), str(tmp_path / "bg.onnx"))
    assert wait_for(lambda: running_tasks() == 0, 60)
    bar = qgis_iface.messageBar()
    assert bar.get_messages(Qgis.Warning) or bar.get_messages(Qgis.Success)
    for message in bar.get_messages(Qgis.Warning):
        assert "ONNX export is not available" in message and "Error" not in message


def test_diagnostics_report(qgis_app, models_dir):
    checks = diagnostics(driver=None)
    by_name = {c.name: c for c in checks}
    for name in ("QGIS", "Python", "torch", "CUDA", "numpy", "rasterio", "RS Seg engine",
                 "Models folder"):
        assert name in by_name, name
    assert by_name["QGIS"].value.startswith("3.22")
    assert by_name["torch"].ok and by_name["torch"].value.startswith("2.13.0")
    assert by_name["CUDA"].ok  # CPU-only torch without an NVIDIA driver is fine
    assert "rasterio" in by_name and "GDAL" in by_name["rasterio"].value
    assert "OK  QGIS: 3.22" in report_text(checks)
    dialog = DiagnosticsDialog(checks)
    assert dialog.table.rowCount() == len(checks)


def test_diagnostics_names_the_fix(qgis_app, monkeypatch, models_dir):
    real = __import__("importlib").import_module
    monkeypatch.setattr("rs_seg_qgis.gui.diagnostics.importlib.import_module",
                        lambda name: (_ for _ in ()).throw(ImportError(name))
                        if name == "torch" else real(name))
    monkeypatch.setattr(deps, "environment", lambda: deps.Environment(False, False))
    torch = {c.name: c for c in diagnostics(driver="575.51.03")}["torch"]
    assert not torch.ok and torch.value == "not installed"
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" \
        in torch.fix
    assert deps.cuda_wheel("580.65") == "cu130" and deps.cuda_wheel("bogus") == "cu128"
    cpu = deps.install_hint(["torch"])
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in cpu


def test_remove_takes_the_engine_checkpoint_and_report_along(tmp_path):
    from engine.training.checkpoints import checkpoint_path
    from engine.training.report import report_paths
    from rs_seg_qgis.gui import model_manager
    model = tmp_path / "m.rsmodel"
    files = [model, checkpoint_path(model), *report_paths(model).values()]
    for f in files:
        f.write_text("x")
    model_manager.remove_model(model)
    assert not any(f.exists() for f in files)


def test_swatches_show_light_classes_as_the_map_does(qgis_app):
    from rs_seg_qgis.gui.widgets import swatch
    image = swatch([255, 255, 255]).pixmap(14, 14).toImage()
    assert image.pixelColor(5, 5).getRgb()[:3] == (199, 199, 199)  # visible on white


def test_card_dialog_shows_edits_and_saves_the_definition(qgis_app, tmp_path):
    import json

    from engine.formats.modelfile import read_card
    from rs_seg_qgis.gui.card_dialog import CardDialog
    model = make_model(tmp_path / "m.rsmodel", bands=3, classes=2, base=4, depth=2, tile=64,
                       overlap=16)
    dialog = CardDialog(model, read_card(model))
    editor = dialog.definition
    shown = json.loads(editor.text.toPlainText())
    assert shown["bands"] == ["R", "G", "B"] and shown["tile"] == 64
    assert "no definition yet" in editor.status.text()
    editor.text.setPlainText(json.dumps(dict(shown, classes=["a", "b", "c"])))
    assert not editor.save_definition() and "3 classes were given" in editor.status.text()
    assert not (tmp_path / "m.rsmodel.json").exists()
    editor.text.setPlainText(json.dumps(dict(shown, classes=["soil", "water"], input_scale=1)))
    assert editor.save_definition() and "saved m.rsmodel.json" in editor.status.text()
    assert [c["name"] for c in read_card(model)["classes"]] == ["soil", "water"]
    rows = [dialog.table.item(r, 1).text() for r in range(dialog.table.rowCount())]
    assert any(r.endswith("soil") for r in rows)
    reopened = CardDialog(model, read_card(model)).definition
    assert json.loads(reopened.text.toPlainText())["input_scale"] == 1
