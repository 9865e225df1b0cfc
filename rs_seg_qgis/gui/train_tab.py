"""The Train tab: images, labels (polygons + class field, or label rasters), architecture and
the few settings that matter; advanced ones folded away."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from qgis.core import QgsMapLayerProxyModel
from qgis.gui import QgsCollapsibleGroupBox, QgsFieldComboBox, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLabel, QPushButton,
                                 QStackedWidget, QVBoxLayout, QWidget)

from ..processing.base import architectures
from . import defaults
from .defaults import class_field
from .model_manager import read_entry
from .params import TrainState, default_model_path
from .widgets import DeviceCombo, ModelPicker, RasterListCombo, hint, spin

TASKS = [("segmentation", "Segmentation (classes)"), ("change", "Change (two dates)")]
LABELS_POLYGONS, LABELS_RASTERS = "polygons", "rasters"


class TrainTab(QWidget):
    """Widgets of a training run; :meth:`state` reads them into a :class:`TrainState`."""

    def __init__(self, models_folder: Callable[[], Path],
                 parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.models_folder = models_folder
        self.task = QComboBox()
        for value, label in TASKS:
            self.task.addItem(label, value)
        self.images = RasterListCombo()
        self.images_after = RasterListCombo()
        self.images_after_label = QLabel("After images")
        self.label_kind = QComboBox()
        self.label_kind.addItem("Polygons with a class field", LABELS_POLYGONS)
        self.label_kind.addItem("Label rasters (one per image)", LABELS_RASTERS)
        self.polygons = QgsMapLayerComboBox()
        self.polygons.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.polygons.setAllowEmptyLayer(True)  # rather empty than an RS Seg result
        self.class_field = QgsFieldComboBox()
        self.polygons.layerChanged.connect(self._polygons_changed)
        self._polygons_changed(self.polygons.currentLayer())
        self.label_rasters = RasterListCombo()
        polygons_page = QWidget()
        polygons_form = QFormLayout(polygons_page)
        polygons_form.setContentsMargins(0, 0, 0, 0)
        polygons_form.addRow("Polygon layer", self.polygons)
        polygons_form.addRow("Class field", self.class_field)
        rasters_page = QWidget()
        rasters_form = QFormLayout(rasters_page)
        rasters_form.setContentsMargins(0, 0, 0, 0)
        rasters_form.addRow("Label rasters", self.label_rasters)
        self.labels = QStackedWidget()
        self.labels.addWidget(polygons_page)
        self.labels.addWidget(rasters_page)

        self.architecture = QComboBox()
        self.epochs = spin(1, 10000, 20)
        self.batch = spin(1, 1024, 8)
        self.tile = spin(16, 4096, 256, step=32)
        self.learning_rate = QDoubleSpinBox()
        self.learning_rate.setDecimals(5)
        self.learning_rate.setRange(0.0, 1.0)
        self.learning_rate.setSingleStep(0.0005)
        self.learning_rate.setSpecialValueText("auto")
        self.learning_rate.setToolTip("auto: the architecture's rate, ×0.3 when fine-tuning")
        self.learning_rate.setValue(0.0)
        self.output = QgsFileWidget()
        self.output.setStorageMode(QgsFileWidget.SaveFile)
        self.output.setFilter("RS Seg models (*.rsmodel)")
        self.output.lineEdit().setPlaceholderText("models folder / <architecture>-<date>.rsmodel")

        self.advanced = QgsCollapsibleGroupBox("Advanced")
        self.validation = QDoubleSpinBox()
        self.validation.setRange(0.0, 0.9)
        self.validation.setSingleStep(0.05)
        self.validation.setValue(0.2)
        self.ignore = spin(-1, 65535, -1, "none")
        self.init_model = ModelPicker("segmentation", models_folder,
                                      none_label="None (train from scratch)")
        self.init_model.setToolTip("Fine-tune a model on a handful of labelled samples of your "
                                   "own imagery: the way to a new sensor, season or resolution. "
                                   "Its normalisation and GSD are kept.")
        self.new_head = QCheckBox("Other classes (new classifier)")
        self.normalisation = QComboBox()
        for value, label in (("", "Default (per image)"), ("image", "Per image"),
                             ("percentile", "2–98 % stretch per image"),
                             ("dataset", "Training data statistics")):
            self.normalisation.addItem(label, value)
        self.time_budget = spin(0, 10 ** 6, 0, "no limit")
        self.time_budget.setSuffix(" s")
        self.time_budget.setToolTip("Stop training after this many seconds (the best model so "
                                    "far is kept); 0: no limit")
        self.backbone = QgsFileWidget()
        self.backbone.setStorageMode(QgsFileWidget.GetFile)
        self.backbone.setFilter("Weights (*.pth *.pt *.bin *.safetensors *.npz);;All files (*)")
        self.backbone.lineEdit().setPlaceholderText("none (random encoder)")
        self.backbone.setToolTip("Published pre-trained encoder weights, as downloaded: ResNet-50 "
                                 "(torchvision/timm) for cafe, glcnet, srcbtfusion; "
                                 "R50+ViT-B_16.npz for srcbtfusion; DINOv2 for vsgnet")
        self.device = DeviceCombo()
        adv = QFormLayout(self.advanced)
        adv.addRow("Validation fraction", self.validation)
        adv.addRow("Ignore label value", self.ignore)
        adv.addRow("Normalisation", self.normalisation)
        adv.addRow("Time budget (seconds)", self.time_budget)
        adv.addRow("Pre-trained backbone", self.backbone)
        adv.addRow("Device", self.device)
        self.advanced.setCollapsed(True)
        self.run = QPushButton("Train")
        self.run.setToolTip("Runs Processing ▸ RS Seg ▸ Train … in the background; loss and "
                            "metrics appear in the log below")

        self.needs_torch = hint("Training needs torch, which is not installed here (ONNX "
                                "models run without it): Plugins ▸ RS Seg ▸ Install "
                                "dependencies… ▸ CPU training.")
        form = QFormLayout()
        form.addRow(self.needs_torch)
        form.addRow("Task", self.task)
        self.images_label = QLabel("Images")
        form.addRow(self.images_label, self.images)
        form.addRow(self.images_after_label, self.images_after)
        form.addRow("Labels", self.label_kind)
        form.addRow(self.labels)
        form.addRow("Architecture", self.architecture)
        form.addRow("Epochs", self.epochs)
        form.addRow("Batch size", self.batch)
        form.addRow("Tile size", self.tile)
        form.addRow("Fine-tune from model", self.init_model)
        form.addRow("", self.new_head)
        form.addRow("Learning rate", self.learning_rate)
        form.addRow("Save model as", self.output)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.advanced)
        layout.addWidget(self.run)
        layout.addWidget(hint("Training can take long on a CPU; it runs in the background and "
                              "can be cancelled (the best model so far is kept)."))
        layout.addStretch(1)

        self.task.currentIndexChanged.connect(self._task_changed)
        self.init_model.changed.connect(self._init_changed)
        self.label_kind.currentIndexChanged.connect(self.labels.setCurrentIndex)
        self._task_changed()
        self.apply_defaults(force=True)
        self.refresh_environment()

    def _polygons_changed(self, layer: object) -> None:
        """Bind the field combo and guess the class field (class, class_value, label …)."""
        self.class_field.setLayer(layer)
        guess = class_field(layer) if layer is not None else None
        if guess:
            self.class_field.setField(guess)

    def refresh_environment(self) -> None:
        """Say here, and only here, that training needs torch when it is missing."""
        from ..deps import environment
        torch = environment().torch
        self.needs_torch.setVisible(not torch)
        self.run.setEnabled(torch)

    def apply_defaults(self, force: bool = False) -> None:
        """Polygons with a class field (not an RS Seg result) and the newest imagery."""
        defaults.apply(self.polygons, defaults.training_polygons(), force)
        image = defaults.default_imagery()
        if image is not None and (force or not self.images.layer_ids()):
            self.images.set_layer_ids([image.id()])

    def _init_changed(self, path: str) -> None:
        """A fine-tune keeps its initial model's architecture: show it, fixed."""
        card = read_entry(path).card if path else None
        arch = (card or {}).get("architecture")
        if arch and self.architecture.findText(arch) >= 0:
            self.architecture.setCurrentText(arch)
        self.architecture.setEnabled(not arch)

    def task_value(self) -> str:
        return self.task.currentData()

    def _task_changed(self, *_: object) -> None:
        task = self.task_value()
        change = task == "change"
        self.images_label.setText("Before images" if change else "Images")
        self.images_after.setVisible(change)
        self.images_after_label.setVisible(change)
        self.architecture.clear()
        names = architectures(task)
        self.architecture.addItems(names)
        default = "fcsiamdiff" if change else "unet"
        if default in names:
            self.architecture.setCurrentText(default)
        self.init_model.task = task
        self.init_model.refresh()

    def state(self) -> TrainState:
        """The tab's choices (the output defaults into the models folder)."""
        polygons = self.label_kind.currentData() == LABELS_POLYGONS
        layer = self.polygons.currentLayer() if polygons else None
        output = self.output.filePath() or default_model_path(self.models_folder(),
                                                              self.architecture.currentText())
        return TrainState(task=self.task_value(), images=self.images.layer_ids(),
                          images_after=self.images_after.layer_ids()
                          if self.task_value() == "change" else [],
                          architecture=self.architecture.currentText(), output_model=output,
                          label_polygons=layer.id() if layer is not None else "",
                          class_field=self.class_field.currentField() if polygons else "",
                          label_rasters=[] if polygons else self.label_rasters.layer_ids(),
                          epochs=self.epochs.value(), batch=self.batch.value(),
                          tile=self.tile.value(),
                          learning_rate=self.learning_rate.value() or None,
                          validation_fraction=self.validation.value(),
                          ignore_value=None if self.ignore.value() < 0 else self.ignore.value(),
                          init_model=self.init_model.path(), new_head=self.new_head.isChecked(),
                          normalisation=self.normalisation.currentData(),
                          time_budget_s=self.time_budget.value() or None,
                          backbone_weights=self.backbone.filePath(), device=self.device.value())
