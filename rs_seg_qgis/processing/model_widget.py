"""The model picker of the Processing dialogs: the models folder's models by name, and still any
path typed, pasted or browsed (the dialog, batch and modeler forms; scripts pass paths).

Only the dialogs import this module (through the parameter's ``widget_wrapper`` metadata), so
``qgis_process`` and the provider never need Processing's GUI.
"""
from __future__ import annotations

from typing import Any, Optional

from processing.gui.wrappers import WidgetWrapper
from qgis.PyQt.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QToolButton, QWidget

from .. import settings
from ..gui.model_manager import list_models
from ..gui.widgets import MODEL_FILTER


class ModelFileWrapper(WidgetWrapper):
    """An editable combo of the models folder (label → path) with a browse button."""

    def createWidget(self, task: Optional[str] = None) -> QWidget:  # noqa: N802 (QGIS API)
        widget = QWidget()
        self.combo = QComboBox()
        self.combo.setEditable(True)
        self.combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.combo.lineEdit().setPlaceholderText("a model of the models folder, or a file path")
        for entry in list_models(settings.models_folder(create=False), task):
            self.combo.addItem(entry.short_label, str(entry.path))
        self.combo.setCurrentIndex(-1)
        browse = QToolButton()
        browse.setText("…")
        browse.setToolTip("Choose a model file")
        browse.clicked.connect(self._browse)
        layout = QHBoxLayout(widget)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo, 1)
        layout.addWidget(browse)
        return widget

    def _browse(self, *_: object) -> None:
        path, _filter = QFileDialog.getOpenFileName(self.widget, "Model file",
                                                    str(settings.models_folder(create=False)),
                                                    MODEL_FILTER)
        if path:
            self.setValue(path)

    def setValue(self, value: Any) -> None:  # noqa: N802 (QGIS API)
        text = "" if value is None else str(value)
        index = self.combo.findData(text)
        if index >= 0:
            self.combo.setCurrentIndex(index)
        else:
            self.combo.setCurrentIndex(-1)
            self.combo.setEditText(text)

    def value(self) -> Optional[str]:
        """The chosen model's path, or the path typed (None when empty)."""
        text = self.combo.currentText().strip()
        index = self.combo.currentIndex()
        if index >= 0 and self.combo.itemText(index) == text:
            return self.combo.itemData(index)
        return text or None
