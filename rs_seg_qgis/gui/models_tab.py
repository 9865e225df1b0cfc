"""The Models tab: the models folder, its models with their cards, and the actions on them."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from qgis.core import Qgis
from qgis.gui import QgsCollapsibleGroupBox
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (QFileDialog, QGridLayout, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                                 QMessageBox, QPushButton, QSplitter, QTableWidget, QVBoxLayout,
                                 QWidget)

from .. import settings
from ..tasks import FunctionTask, start_function
from .card_dialog import CardDialog, fill_card_table
from .catalogue_panel import CataloguePanel
from .messages import InputProblem, guarded, notify
from .model_export import export_onnx
from .model_manager import ModelEntry, import_model, list_models, read_entry, remove_model
from .widgets import MODEL_FILTER, folder_widget, notice, palette_icon

EMPTY_TEXT = ("No model in the models folder yet. Get one above (pick it, then Download), "
              "open a model file you have (Import…), or train one from polygons (Train tab).")


class ModelsTab(QWidget):
    """Model manager.  ``models_changed(path)`` tells the other tabs to relist (and select)."""

    models_changed = pyqtSignal(str)
    check_environment = pyqtSignal()

    def __init__(self, iface: Any, parent: Optional[QWidget] = None,
                 confirm: Optional[Callable[[str], bool]] = None) -> None:
        super().__init__(parent)
        self.iface = iface
        # asks the user; replaceable so tests need no modal dialog
        self.confirm = confirm or self._ask
        self.folder = folder_widget(str(settings.default_models_folder()))
        self.folder.setFilePath(str(settings.models_folder()))
        self.folder.fileChanged.connect(self._folder_changed)
        self.list = QListWidget()
        self.details = QTableWidget()
        self.import_button = QPushButton("Import…")
        self.remove_button = QPushButton("Remove")
        self.card_button = QPushButton("Card…")
        self.export_button = QPushButton("Export ONNX…")
        self.environment_button = QPushButton("Check environment…")
        self.import_button.setToolTip("Copy a .rsmodel or .onnx file into the models folder")
        self.export_button.setToolTip("Write the model as ONNX (onnxruntime, Deepness), when "
                                      "torch can export its architecture")

        self.catalogue = CataloguePanel(iface)
        self.catalogue_box = QgsCollapsibleGroupBox("Get models (catalogue)")
        catalogue_layout = QVBoxLayout(self.catalogue_box)
        catalogue_layout.setContentsMargins(2, 2, 2, 2)
        catalogue_layout.addWidget(self.catalogue)
        self.catalogue.downloaded.connect(lambda path, task: self._downloaded(path))
        self.empty = notice(EMPTY_TEXT)

        # two rows of two: every button stays reachable at the dock's default width
        buttons = QGridLayout()
        for i, b in enumerate((self.import_button, self.remove_button, self.card_button,
                               self.export_button)):
            buttons.addWidget(b, i // 2, i % 2)
        splitter = self.splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.list)
        splitter.addWidget(self.details)
        splitter.setSizes([120, 220])
        folder_row = QHBoxLayout()
        folder_row.addWidget(QLabel("Models folder"))
        folder_row.addWidget(self.folder, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.catalogue_box)
        layout.addLayout(folder_row)
        layout.addWidget(self.empty)
        layout.addWidget(splitter, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.environment_button)

        self.list.currentItemChanged.connect(self._show_current)
        self.import_button.clicked.connect(self.import_dialog)
        self.remove_button.clicked.connect(self.remove_current)
        self.card_button.clicked.connect(self.show_card)
        self.export_button.clicked.connect(self.export_dialog)
        self.environment_button.clicked.connect(lambda *_: self.check_environment.emit())
        self.refresh()

    # ---- listing -----------------------------------------------------------------------------

    def refresh(self, select: str = "") -> None:
        """Relist the models folder."""
        keep = select or self.current_path()
        self.list.clear()
        for entry in list_models(settings.models_folder()):
            item = QListWidgetItem(entry.label)
            item.setData(Qt.ItemDataRole.UserRole, str(entry.path))
            item.setToolTip(entry.error or str(entry.path))
            if entry.card and entry.card.get("classes"):
                item.setIcon(palette_icon([c["color"] for c in entry.card["classes"]]))
            self.list.addItem(item)
            if str(entry.path) == keep:
                self.list.setCurrentItem(item)
        if self.list.currentItem() is None and self.list.count():
            self.list.setCurrentRow(0)
        self._show_current()

    def current_path(self) -> str:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else ""

    def current_entry(self) -> Optional[ModelEntry]:
        path = self.current_path()
        return read_entry(path) if path else None

    def _show_current(self, *_: object) -> None:
        entry = self.current_entry()
        fill_card_table(self.details, entry.card if entry else None,
                        entry.error if entry else "no model selected")
        for b in (self.remove_button, self.card_button, self.export_button):
            b.setEnabled(entry is not None)
        self.empty.setVisible(self.list.count() == 0)
        self.splitter.setVisible(self.list.count() > 0)
        self.catalogue_box.setCollapsed(self.list.count() > 0)

    def _downloaded(self, path: str) -> None:
        self.refresh(path)
        self.models_changed.emit(path)

    @guarded(lambda self: self.iface)
    def _folder_changed(self, folder: str) -> None:
        settings.set_models_folder(folder)
        self.refresh()
        self.models_changed.emit("")

    # ---- actions -----------------------------------------------------------------------------

    @guarded(lambda self: self.iface)
    def import_file(self, source: str) -> Path:
        """Copy ``source`` into the models folder and select it."""
        target = import_model(source, settings.models_folder())
        self.refresh(str(target))
        self.models_changed.emit(str(target))
        notify(self.iface, f"Imported {target.name} into the models folder.", Qgis.Success, 4)
        return target

    def import_dialog(self, *_: object) -> None:
        path, _filter = QFileDialog.getOpenFileName(self, "Import model", "", MODEL_FILTER)
        if path:
            self.import_file(path)

    @guarded(lambda self: self.iface)
    def remove_current(self, *_: object) -> bool:
        """Delete the selected model after the user confirms."""
        path = self.current_path()
        if not path:
            raise InputProblem("Select a model to remove.")
        if not self.confirm(f"Delete {Path(path).name} (and its training report) from the "
                            f"models folder?"):
            return False
        remove_model(path)
        self.refresh()
        self.models_changed.emit("")
        return True

    def _ask(self, question: str) -> bool:
        return QMessageBox.question(self, "RS Seg", question) == QMessageBox.StandardButton.Yes

    @guarded(lambda self: self.iface)
    def show_card(self, *_: object) -> CardDialog:
        entry = self.current_entry()
        if entry is None:
            raise InputProblem("Select a model first.")
        dialog = CardDialog(entry.path, entry.card, entry.error, self)
        dialog.show()
        return dialog

    def export_dialog(self, *_: object) -> None:
        path = self.current_path()
        if not path:
            return
        target, _filter = QFileDialog.getSaveFileName(
            self, "Export ONNX", str(Path(path).with_suffix(".onnx")), "ONNX (*.onnx)")
        if target:
            self.export(path, target)

    @guarded(lambda self: self.iface)
    def export(self, model: str, target: str) -> FunctionTask:
        """Export in the background; success or "not available" goes to the message bar."""
        def done(task: FunctionTask) -> None:
            if task.error:
                notify(self.iface, task.error, Qgis.Warning)
            else:
                notify(self.iface, f"Exported {Path(model).name} to {target}", Qgis.Success, 5)
        return start_function(f"RS Seg: export {Path(model).name} to ONNX",
                              lambda progress=None, cancelled=None: export_onnx(
                                  model, target, progress, cancelled),
                              done)
