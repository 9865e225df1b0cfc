"""The Compare dates tab: before/after layers, change model (or CVA), from-to, threshold."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from qgis.PyQt.QtWidgets import (QCheckBox, QDoubleSpinBox, QFormLayout,
                                 QPushButton, QVBoxLayout, QWidget)

from . import defaults
from .model_manager import read_entry
from .params import ChangeState, Outputs, Tiling, run_stamp, safe_name
from .widgets import DeviceCombo, ModelPicker, TilingBox, folder_widget, hint, raster_combo

CVA_LABEL = "No model: change vector analysis"


class ChangeTab(QWidget):
    """Widgets of a change run; :meth:`state` reads them into a :class:`ChangeState`."""

    def __init__(self, models_folder: Callable[[], Path],
                 parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.before = raster_combo()
        self.after = raster_combo()
        self.model = ModelPicker("change", models_folder, none_label=CVA_LABEL)
        self.segmentation = ModelPicker("segmentation", models_folder,
                                        none_label="None (no from-to classes)")
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setDecimals(2)
        self.threshold.setValue(0.5)
        self.threshold.setToolTip("Change probability from which a pixel counts as changed "
                                  "(higher: fewer, surer changes)")
        self.device = DeviceCombo()
        self.polygons = QCheckBox("Change polygons")
        self.polygons.setChecked(True)
        self.probabilities = QCheckBox("Change probability")
        self.output_folder = folder_widget("temporary files")
        self.tiling = TilingBox()
        self.run = QPushButton("Detect change")
        self.run.setToolTip("Runs Processing ▸ RS Seg ▸ Detect change in the background")

        outputs_row = QVBoxLayout()  # stacked: side by side they do not fit a narrow dock
        outputs_row.addWidget(self.polygons)
        outputs_row.addWidget(self.probabilities)
        form = QFormLayout()
        form.addRow("Before", self.before)
        form.addRow("After", self.after)
        form.addRow("Change model", self.model)
        form.addRow("Threshold", self.threshold)
        form.addRow("From-to with", self.segmentation)
        form.addRow("Device", self.device)
        form.addRow("Also write", outputs_row)
        form.addRow("Output folder", self.output_folder)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(hint("The dates may differ in CRS, resolution and extent: 'after' is "
                              "aligned onto 'before' over their overlap."))
        layout.addWidget(self.tiling)
        layout.addWidget(self.run)
        layout.addStretch(1)
        self.model.changed.connect(self._model_changed)
        self._model_changed(self.model.path())
        self.apply_defaults(force=True)

    def apply_defaults(self, force: bool = False) -> None:
        """Two different imagery layers: the older as 'before', the newer as 'after'."""
        before, after = defaults.date_pair()
        same = self.before.currentLayer() is not None and \
            self.before.currentLayer() is self.after.currentLayer()
        defaults.apply(self.before, before, force or same)
        defaults.apply(self.after, after, force or same)

    def _model_changed(self, path: str) -> None:
        self.tiling.set_from_card(read_entry(path).card if path else None)
        self.tiling.setEnabled(bool(path))  # CVA has no tiles

    def state(self) -> ChangeState:
        """The tab's choices."""
        before, after = self.before.currentLayer(), self.after.currentLayer()
        before_name = before.name() if before else ""
        model = self.model.path()
        stem = (f"{safe_name(before_name)}_{safe_name(Path(model).stem if model else 'cva')}_"
                f"{run_stamp()}")
        return ChangeState(before=before.id() if before else "", before_name=before_name,
                           after=after.id() if after else "",
                           after_name=after.name() if after else "",
                           model=model, segmentation_model=self.segmentation.path(),
                           threshold=self.threshold.value(), device=self.device.value(),
                           tiling=self.tiling.tiling() if model else Tiling(),
                           probabilities=self.probabilities.isChecked(),
                           polygons=self.polygons.isChecked(),
                           outputs=Outputs(self.output_folder.filePath(), stem))
