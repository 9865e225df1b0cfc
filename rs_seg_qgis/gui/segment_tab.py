"""The Segment tab: layer, model, device, extent and outputs of a segmentation run, and the
click-to-segment settings."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle
from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget, QgsMapCanvas, QgsMapToolExtent
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QLineEdit,
                                 QPushButton, QToolButton, QVBoxLayout, QWidget)

from . import defaults
from .map_tool import MODE_SAM, MODES, ClickSource
from .messages import InputProblem
from .model_manager import read_entry
from .params import (OUTLINES_MODEL, OUTLINES_PIXEL, Outputs, SegmentState, extent_text,
                     run_stamp, safe_name)
from .widgets import (DeviceCombo, ModelPicker, TilingBox, folder_widget, hint, notice,
                      raster_combo, spin)

EXTENT_LAYER, EXTENT_CANVAS, EXTENT_DRAWN = "layer", "canvas", "drawn"
SEGMENT_TIP = "Runs Processing ▸ RS Seg ▸ Segment raster in the background"
SAM_PATTERN = "sam_vit_*.pth"


class SegmentTab(QWidget):
    """Widgets of a segmentation run; :meth:`state` reads them into a :class:`SegmentState`.

    ``wants_tab(name)`` asks the dock to show another tab ("models", "train").
    """

    wants_tab = pyqtSignal(str)

    def __init__(self, canvas: QgsMapCanvas, models_folder: Callable[[], Path],
                 parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.drawn: Optional[tuple] = None  # (QgsRectangle, QgsCoordinateReferenceSystem)
        self.layer = raster_combo()
        self.aux = raster_combo(allow_empty=True)
        self.aux.setToolTip("Only for models that take an auxiliary input (e.g. a DSM)")
        self.model = ModelPicker("segmentation", models_folder)
        self.device = DeviceCombo()
        self.bands = QLineEdit()
        self.bands.setPlaceholderText("the model's (e.g. 1,2,3)")
        self.bands.setToolTip("Which layer bands feed the model, in the model's order (what "
                              "error messages call --bands / BANDS)")
        self.extent = QComboBox()
        self.extent.addItem("Whole layer", EXTENT_LAYER)
        self.extent.addItem("Map view", EXTENT_CANVAS)
        self.extent.addItem("Drawn rectangle", EXTENT_DRAWN)
        self.draw = QToolButton()
        self.draw.setText("Draw")
        self.draw.setToolTip("Drag a rectangle on the map")
        self.draw.setCheckable(True)
        self.polygons = QCheckBox("Class polygons")
        self.outlines = QComboBox()
        self.outlines.addItem("Shaped as the model says", OUTLINES_MODEL)
        self.outlines.addItem("Pixel outlines", OUTLINES_PIXEL)
        self.outlines.setToolTip("Shaped: building classes regularised (right angles, shared "
                                 "walls), natural classes smoothed with shared borders, as the "
                                 "model's class shapes say; every polygon carries its mean and "
                                 "minimum class probability and the model's provenance")
        self.outlines.setEnabled(False)
        self.polygons.toggled.connect(self.outlines.setEnabled)
        self.probabilities = QCheckBox("Class probabilities")
        self.output_folder = folder_widget("temporary files")
        self.tiling = TilingBox()
        self.run = QPushButton("Segment")

        self.window = spin(32, 4096, 512, step=32)
        self.window.setToolTip("Edge of the square window segmented around each click, in pixels")
        self.click_mode = QComboBox()
        for value, label in MODES:
            self.click_mode.addItem(label, value)
        self.click_mode.setToolTip("class region (model): the region of the class the model "
                                   "predicts; objects (SAM): the object under the click, "
                                   "zero-shot, from a local Segment Anything checkpoint")
        self.sam_weights = QgsFileWidget()
        self.sam_weights.setStorageMode(QgsFileWidget.GetFile)
        self.sam_weights.setFilter("SAM checkpoints (*.pth *.pt *.safetensors);;All files (*)")
        self.sam_weights.lineEdit().setPlaceholderText("Models tab ▸ Get models ▸ Segment "
                                                       "Anything")
        downloaded = sorted(models_folder().glob(SAM_PATTERN))
        if downloaded:
            self.sam_weights.setFilePath(str(downloaded[0]))
        self.pick = QPushButton("Click on the map…")
        self.pick.setCheckable(True)
        self.pick.setToolTip("Click an object: its region is previewed; click it again (or press "
                             "Enter) to add it to the 'Segments' layer")

        extent_row = QHBoxLayout()
        extent_row.addWidget(self.extent, 1)
        extent_row.addWidget(self.draw)
        outputs_row = QVBoxLayout()  # stacked: side by side they do not fit a narrow dock
        outputs_row.addWidget(self.polygons)
        outputs_row.addWidget(self.outlines)
        outputs_row.addWidget(self.probabilities)

        form = QFormLayout()
        form.addRow("Raster layer", self.layer)
        form.addRow("Model", self.model)
        form.addRow("Auxiliary layer", self.aux)
        form.addRow("Bands", self.bands)
        form.addRow("Device", self.device)
        form.addRow("Extent", extent_row)
        form.addRow("Also write", outputs_row)
        form.addRow("Output folder", self.output_folder)

        click = QgsCollapsibleGroupBox("Click to segment")
        click_form = QFormLayout(click)
        click_form.addRow("Mode", self.click_mode)
        click_form.addRow("SAM weights", self.sam_weights)
        click_form.addRow("Window (px)", self.window)
        click_form.addRow(self.pick)
        click_form.addRow(hint("Uses the layer, model and device above. Enter adds the "
                               "previewed region, Esc discards it."))

        # the first-run state: no model yet, and the three ways to get one
        self.empty = QWidget()
        empty_layout = QVBoxLayout(self.empty)
        empty_layout.setContentsMargins(0, 0, 0, 0)
        empty_layout.addWidget(notice("No segmentation model yet. Get a ready-made one from "
                                      "the catalogue, open a model file you have, or train one "
                                      "from polygons you digitised."))
        self.get_models = QPushButton("Get a model…")
        self.open_model = QPushButton("Open a model file…")
        self.train_model = QPushButton("Train from polygons…")
        for button in (self.get_models, self.open_model, self.train_model):
            empty_layout.addWidget(button)
        self.open_model.clicked.connect(self.model.browse_file)
        self.get_models.clicked.connect(lambda *_: self.wants_tab.emit("models"))
        self.train_model.clicked.connect(lambda *_: self.wants_tab.emit("train"))

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.empty)
        layout.addWidget(self.tiling)
        layout.addWidget(self.run)
        layout.addWidget(click)
        layout.addStretch(1)

        self.rectangle_tool = QgsMapToolExtent(canvas)
        self.rectangle_tool.extentChanged.connect(self._drawn)
        self.draw.toggled.connect(self._draw_toggled)
        self.model.changed.connect(self._model_changed)
        self._model_changed(self.model.path())
        self.apply_defaults(force=True)

    def apply_defaults(self, force: bool = False) -> None:
        """The most recently added imagery layer that is not an RS Seg result."""
        defaults.apply(self.layer, defaults.default_imagery(), force)

    # ---- extent ------------------------------------------------------------------------------

    def _draw_toggled(self, on: bool) -> None:
        if on:
            self.canvas.setMapTool(self.rectangle_tool)
        elif self.canvas.mapTool() is self.rectangle_tool:
            self.canvas.unsetMapTool(self.rectangle_tool)

    def _drawn(self, rectangle: QgsRectangle) -> None:
        self.set_drawn_extent(rectangle, self.canvas.mapSettings().destinationCrs())
        self.draw.setChecked(False)

    def set_drawn_extent(self, rectangle: QgsRectangle,
                         crs: QgsCoordinateReferenceSystem) -> None:
        """Use ``rectangle`` (in ``crs``) as the run's extent."""
        self.drawn = (QgsRectangle(rectangle), crs)
        self.extent.setCurrentIndex(self.extent.findData(EXTENT_DRAWN))

    def extent_value(self) -> str:
        """The EXTENT parameter for the chosen extent ('' = whole layer)."""
        choice = self.extent.currentData()
        if choice == EXTENT_CANVAS:
            r = self.canvas.extent()
            crs = self.canvas.mapSettings().destinationCrs()
        elif choice == EXTENT_DRAWN:
            if self.drawn is None or self.drawn[0].isEmpty():
                raise InputProblem("Draw the rectangle on the map first (Extent ▸ Draw), or "
                                   "choose another extent.")
            r, crs = self.drawn
        else:
            return ""
        return extent_text(r.xMinimum(), r.yMinimum(), r.xMaximum(), r.yMaximum(), crs.authid())

    # ---- model -------------------------------------------------------------------------------

    def _model_changed(self, path: str) -> None:
        card = read_entry(path).card if path else None
        self.tiling.set_from_card(card)
        self.run.setEnabled(card is not None)
        self.run.setToolTip(SEGMENT_TIP if card is not None else
                            "Choose a model first (Model, above)")
        self.empty.setVisible(self.model.combo.count() == 0)

    def set_sam_weights(self, path: str) -> None:
        """Click to segment with the SAM checkpoint ``path`` (e.g. just downloaded)."""
        self.sam_weights.setFilePath(path)
        self.click_mode.setCurrentIndex(self.click_mode.findData(MODE_SAM))

    # ---- state -------------------------------------------------------------------------------

    def state(self) -> SegmentState:
        """The tab's choices."""
        layer, aux = self.layer.currentLayer(), self.aux.currentLayer()
        name = layer.name() if layer is not None else ""
        stem = f"{safe_name(name)}_{safe_name(Path(self.model.path()).stem)}_{run_stamp()}"
        return SegmentState(layer=layer.id() if layer is not None else "", layer_name=name,
                            model=self.model.path(), aux_layer=aux.id() if aux else "",
                            device=self.device.value(), tiling=self.tiling.tiling(),
                            extent=self.extent_value(),
                            probabilities=self.probabilities.isChecked(),
                            polygons=self.polygons.isChecked(),
                            outlines=self.outlines.currentData(),
                            outputs=Outputs(self.output_folder.filePath(), stem),
                            bands=self.bands.text())

    def click_source(self) -> ClickSource:
        """What the click-to-segment tool uses."""
        return ClickSource(self.layer.currentLayer(), self.model.path(), self.device.value(),
                           self.window.value(), mode=self.click_mode.currentData(),
                           sam_weights=self.sam_weights.filePath()
                           if self.click_mode.currentData() == MODE_SAM else "")
