"""Small reusable widgets of the dock: device combo, model picker, layer lists, swatches."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

from qgis.core import QgsMapLayerProxyModel, QgsProject, QgsRasterLayer
from qgis.gui import (QgsCheckableComboBox, QgsCollapsibleGroupBox, QgsFileWidget,
                      QgsMapLayerComboBox)
from qgis.PyQt.QtCore import QRectF, Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor, QIcon, QPainter, QPixmap
from qgis.PyQt.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                                 QSizePolicy, QSpinBox, QToolButton, QWidget)

from .. import deps
from ..colours import readable
from .model_manager import ModelEntry, list_models, read_entry

MODEL_FILTER = ("Models (*.rsmodel *.onnx);;RS Seg models (*.rsmodel);;ONNX models (*.onnx)"
                ";;All files (*)")


def swatch(rgb: Sequence[int], size: int = 14) -> QIcon:
    """A small square icon of colour ``rgb`` (class colours in lists and tables)."""
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(*readable(list(rgb)[:3])))  # as the map shows it: white is tinted
    return QIcon(pixmap)


def palette_icon(colours: Sequence[Sequence[int]], size: int = 14) -> QIcon:
    """An icon of up to four vertical colour stripes: a model's first class colours."""
    colours = list(colours)[:4] or [[128, 128, 128]]
    pixmap = QPixmap(size, size)
    painter = QPainter(pixmap)
    step = size / len(colours)
    for i, rgb in enumerate(colours):
        painter.fillRect(QRectF(i * step, 0, step + 1, size), QColor(*readable(list(rgb)[:3])))
    painter.end()
    return QIcon(pixmap)


def device_choices(gpus: Optional[Iterable[deps.Gpu]] = None) -> List[Tuple[str, str]]:
    """(value, label) of the devices to offer: auto, CPU and each CUDA GPU torch finds."""
    found = deps.torch_gpus() if gpus is None else list(gpus)
    return ([("auto", "Auto (GPU when available)"), ("cpu", "CPU")]
            + [(g.device, g.label) for g in found])


class DeviceCombo(QComboBox):
    """Device choice; the GPU list is read (torch imported) only when the combo is filled."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self._filled = False
        self.addItem("Auto (GPU when available)", "auto")
        self.addItem("CPU", "cpu")

    def fill(self, gpus: Optional[Iterable[deps.Gpu]] = None) -> None:
        """(Re)list the devices, keeping the current choice when it still exists."""
        current = self.value()
        self.clear()
        for value, label in device_choices(gpus):
            self.addItem(label, value)
        self._filled = True
        self.set_value(current)

    def showPopup(self) -> None:  # noqa: N802 (Qt API) — list GPUs lazily, on first open
        if not self._filled:
            self.fill()
        super().showPopup()

    def value(self) -> str:
        return self.currentData() or "auto"

    def set_value(self, value: str) -> None:
        index = self.findData(value)
        self.setCurrentIndex(index if index >= 0 else 0)


class ModelPicker(QWidget):
    """Combo of the models folder's models of one task, plus a file browser button.

    ``none_label`` adds a first entry meaning "no model" (value '').
    """

    changed = pyqtSignal(str)

    def __init__(self, task: str, folder: Callable[[], Path], none_label: str = "",
                 parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.task, self._folder, self._none_label = task, folder, none_label
        self.combo = QComboBox()
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(12)
        self.combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.browse = QToolButton()
        self.browse.setText("…")
        self.browse.setToolTip("Choose a model file")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.browse)
        self.browse.clicked.connect(self.browse_file)
        self.combo.currentIndexChanged.connect(lambda *_: self.changed.emit(self.path()))
        self.refresh()

    def refresh(self, select: str = "") -> None:
        """Relist the models folder; keep (or select) a model by path."""
        keep = select or self.path()
        self.combo.blockSignals(True)
        self.combo.clear()
        if self._none_label:
            self.combo.addItem(self._none_label, "")
        for entry in list_models(self._folder(), self.task):
            self._add(entry)
        self.combo.setPlaceholderText(f"no {self.task} model yet")
        self.combo.blockSignals(False)
        self.select(keep)
        self.changed.emit(self.path())

    def _add(self, entry: ModelEntry) -> None:
        icon = palette_icon([c["color"] for c in (entry.card or {}).get("classes", [])])
        self.combo.addItem(icon, entry.short_label, str(entry.path))
        self.combo.setItemData(self.combo.count() - 1, f"{entry.label}\n{entry.path}",
                               Qt.ItemDataRole.ToolTipRole)

    def select(self, path: str) -> None:
        """Make ``path`` current, adding it when it lives outside the models folder."""
        if not path:
            if self.combo.count():
                self.combo.setCurrentIndex(0)
            return
        index = self.combo.findData(str(path))
        if index < 0:
            self._add(read_entry(path))
            index = self.combo.count() - 1
        self.combo.setCurrentIndex(index)

    def path(self) -> str:
        return self.combo.currentData() or ""

    def browse_file(self, *_: object) -> None:
        """Ask for a model file and select it (it stays where it is)."""
        path, _filter = QFileDialog.getOpenFileName(self, "Model file", str(self._folder()),
                                                    MODEL_FILTER)
        if path:
            self.select(path)


def raster_combo(allow_empty: bool = False) -> QgsMapLayerComboBox:
    """A project-layer combo listing raster layers only."""
    combo = QgsMapLayerComboBox()
    combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
    combo.setAllowEmptyLayer(allow_empty)
    if allow_empty:
        combo.setLayer(None)
    return combo


class RasterListCombo(QgsCheckableComboBox):
    """Checkable list of the project's raster layers (several training images)."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setDefaultText("(choose raster layers)")
        project = QgsProject.instance()
        # bound methods: PyQt drops the connection when this widget is destroyed
        project.layersAdded.connect(self._layers_changed)
        project.layersRemoved.connect(self._layers_changed)
        self.refresh()

    def _layers_changed(self, *_: object) -> None:
        self.refresh()

    def refresh(self) -> None:
        checked = set(self.checkedItemsData())
        self.clear()
        for layer in QgsProject.instance().mapLayers().values():
            if isinstance(layer, QgsRasterLayer):
                self.addItemWithCheckState(layer.name(),
                                           Qt.CheckState.Checked if layer.id() in checked else Qt.CheckState.Unchecked,
                                           layer.id())

    def layer_ids(self) -> List[str]:
        return [str(v) for v in self.checkedItemsData()]

    def set_layer_ids(self, ids: Sequence[str]) -> None:
        for i in range(self.count()):
            self.setItemCheckState(i, Qt.CheckState.Checked if self.itemData(i) in ids else Qt.CheckState.Unchecked)


def spin(minimum: int, maximum: int, value: int, special: str = "", step: int = 1) -> QSpinBox:
    """An integer spin box; ``special`` is shown at the minimum (e.g. "model's")."""
    box = QSpinBox()
    box.setRange(minimum, maximum)
    box.setSingleStep(step)
    if special:
        box.setSpecialValueText(special)
    box.setValue(value)
    return box


class TilingBox(QgsCollapsibleGroupBox):
    """Tile, overlap and batch size, folded by default; filled from the chosen model's card."""

    def __init__(self, title: str = "Tiling", parent: Optional[QWidget] = None) -> None:
        super().__init__(title, parent)
        self.tile = spin(0, 8192, 0, "model's", step=32)
        self.overlap = spin(-1, 4096, -1, "model's", step=8)
        self.batch = spin(0, 1024, 0, "auto (8)")
        self.tile.setToolTip("Window edge fed to the network, in pixels")
        self.overlap.setToolTip("Pixels neighbouring windows share (hides tile seams)")
        self.batch.setToolTip("Windows per step; lower it when the GPU runs out of memory")
        form = QFormLayout(self)
        form.addRow("Tile size", self.tile)
        form.addRow("Overlap", self.overlap)
        form.addRow("Batch size", self.batch)
        self.setCollapsed(True)

    def set_from_card(self, card: Optional[dict]) -> None:
        """The model's tile and overlap (the defaults the engine would use anyway)."""
        if card:
            self.tile.setValue(int(card.get("tile_size") or 0))
            self.overlap.setValue(int(card.get("overlap") if card.get("overlap") is not None
                                      else -1))
        else:
            self.tile.setValue(0)
            self.overlap.setValue(-1)

    def tiling(self) -> "Tiling":
        from .params import Tiling
        return Tiling(tile=self.tile.value() or None,
                      overlap=None if self.overlap.value() < 0 else self.overlap.value(),
                      batch=self.batch.value() or None)


def fit_narrow(widget: QWidget, characters: int = 8) -> None:
    """Let ``widget``'s combos shrink to ``characters`` (long entries elide, the full text is in
    the popup) and its forms put labels above fields when a row does not fit: the dock's
    default width then shows every control."""
    for combo in widget.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(min(characters, combo.minimumContentsLength() or characters))
        combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    for form in widget.findChildren(QFormLayout):
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
    for label in widget.findChildren(QLabel):
        label.setWordWrap(True)


def notice(text: str) -> QLabel:
    """A wrapped label in the normal text colour: what to do next (empty states)."""
    label = QLabel(text)
    label.setWordWrap(True)
    return label


def folder_widget(placeholder: str) -> QgsFileWidget:
    """A folder chooser (empty = ``placeholder``)."""
    widget = QgsFileWidget()
    widget.setStorageMode(QgsFileWidget.GetDirectory)
    widget.lineEdit().setPlaceholderText(placeholder)
    return widget


def hint(text: str) -> QLabel:
    """A small grey explanatory label."""
    label = QLabel(text)
    label.setWordWrap(True)
    label.setStyleSheet("font-style: italic;")  # grey small print was hard to read
    return label
