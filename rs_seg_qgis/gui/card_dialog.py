"""Views of a model card: the details table (shared by the Models tab) and a dialog that also
shows, edits and saves the model definition beside the model (``MODEL.onnx.json``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QPixmap
from qgis.PyQt.QtWidgets import (QAbstractItemView, QDialog, QDialogButtonBox, QHeaderView,
                                 QLabel, QPlainTextEdit, QPushButton, QTableWidget,
                                 QTableWidgetItem, QVBoxLayout, QWidget)

from .model_manager import card_rows, curves_path
from .widgets import swatch


def fill_card_table(table: QTableWidget, card: Optional[Dict[str, Any]], error: str = "") -> None:
    """Card rows, then one row per class with its colour swatch."""
    table.clear()
    table.setColumnCount(2)
    table.horizontalHeader().setVisible(False)
    table.verticalHeader().setVisible(False)
    if card is None:
        table.setRowCount(1)
        table.setItem(0, 0, QTableWidgetItem("Problem"))
        table.setItem(0, 1, QTableWidgetItem(error or "no model selected"))
        return
    rows = card_rows(card)
    classes = card.get("classes") or []
    table.setRowCount(len(rows) + len(classes))
    for i, (key, value) in enumerate(rows):
        table.setItem(i, 0, QTableWidgetItem(key))
        item = QTableWidgetItem(value)
        item.setToolTip(value)
        table.setItem(i, 1, item)
    for j, c in enumerate(classes):
        row = len(rows) + j
        table.setItem(row, 0, QTableWidgetItem("Class" if j == 0 else ""))
        item = QTableWidgetItem(swatch(c["color"]), f"{c['value']}  {c['name']}")
        table.setItem(row, 1, item)
    table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    table.setWordWrap(True)  # long values (bands, per-class scores) wrap instead of "…"
    table.resizeRowsToContents()
    if not table.property("rs_seg_rows_follow"):  # rows grow again when the column narrows
        table.horizontalHeader().sectionResized.connect(
            lambda *_: table.resizeRowsToContents())
        table.setProperty("rs_seg_rows_follow", True)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.resizeRowsToContents()


class CardDialog(QDialog):
    """A model's card (and its training curves when they sit beside it), read-only."""

    def __init__(self, path: str | Path, card: Optional[Dict[str, Any]], error: str = "",
                 parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Model card — {Path(path).name}")
        self.table = QTableWidget()
        fill_card_table(self.table, card, error)
        layout = QVBoxLayout(self)
        title = QLabel(f"<b>{Path(path).name}</b><br><small>{path}</small>")
        title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(title)
        layout.addWidget(self.table)
        if card is not None:
            self.definition = DefinitionEditor(path, card, self._saved)
            layout.addWidget(self.definition)
        curves = curves_path(path)
        if curves.is_file():
            image = QLabel()
            image.setPixmap(QPixmap(str(curves)).scaledToWidth(520, Qt.TransformationMode.SmoothTransformation))
            layout.addWidget(image)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(560, 820 if curves.is_file() else 660)

    def _saved(self, card: Dict[str, Any]) -> None:
        fill_card_table(self.table, card)


def definition_template(card: Dict[str, Any]) -> Dict[str, Any]:
    """A starting definition from what the card says now (bands, classes, tiling)."""
    group = next(iter(card["inputs"].values()))
    values = {"rs_seg_definition": 1, "bands": [b["name"] for b in group["bands"]],
              "classes": [c["name"] for c in card["classes"]], "tile": card["tile_size"],
              "overlap": card["overlap"], "gsd_m": card.get("gsd_m"),
              "threshold": card.get("threshold")}
    return {k: v for k, v in values.items() if v is not None}


class DefinitionEditor(QWidget):
    """The model definition as JSON: the file beside the model when there is one, else a
    template from the card; Save has the engine check it against the model and write it."""

    def __init__(self, path: str | Path, card: Dict[str, Any],
                 on_saved: Callable[[Dict[str, Any]], None],
                 parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.path, self.on_saved = str(path), on_saved
        saved = Path(str(path) + ".json")
        self.text = QPlainTextEdit(saved.read_text(encoding="utf-8") if saved.is_file() else
                                   json.dumps(definition_template(card), indent=2))
        self.status = QLabel(f"definition: {saved.name}" if saved.is_file() else
                             f"no definition yet; Save writes {saved.name}")
        self.status.setWordWrap(True)
        self.save = QPushButton("Save definition")
        self.save.clicked.connect(self.save_definition)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("<b>Model definition</b> (bands, input scale, mean/std, "
                                "classes, threshold, tile, outputs)"))
        layout.addWidget(self.text)
        layout.addWidget(self.status)
        layout.addWidget(self.save)

    def save_definition(self) -> bool:
        """Check and write the edited definition; the status line says what happened."""
        from engine.formats.describe import save_definition
        from engine.jobs import EngineError
        try:
            result = save_definition(self.path, json.loads(self.text.toPlainText() or "{}"))
        except json.JSONDecodeError as exc:
            self.status.setText(f"not saved: the text is not JSON ({exc})")
            return False
        except EngineError as exc:
            self.status.setText(f"not saved: {exc}")
            return False
        self.status.setText(f"saved {Path(result['path']).name}" if result["written"] else
                            "definition removed")
        self.on_saved(result["card"])
        return True


class ReportDialog(QDialog):
    """Shown when a training run finishes: the curves PNG and the best score."""

    def __init__(self, model: str | Path, best: Optional[float], curves: Optional[str],
                 parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Training report — {Path(model).name}")
        layout = QVBoxLayout(self)
        score = f"{best:.4f}" if isinstance(best, (int, float)) else "n/a"
        text = QLabel(f"Model saved as <b>{model}</b><br>Best validation score: <b>{score}</b>")
        text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        text.setWordWrap(True)
        layout.addWidget(text)
        if curves and Path(curves).is_file():
            image = QLabel()
            image.setPixmap(QPixmap(str(curves)).scaledToWidth(640, Qt.TransformationMode.SmoothTransformation))
            layout.addWidget(image)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
