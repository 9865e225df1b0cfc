"""The Review tab: the analyst's loop in the dock.

1. List the least certain places in the current view (from the model's uncertainty layer);
   "Next place to check" zooms there and "Mark reviewed" records it (a reviewed place with no
   correction counts as confirmed).
2. Corrections go to a GeoPackage beside the project, made on demand: draw polygons, or copy
   selected predicted polygons with another class.
3. "Fine-tune and re-predict" runs ``rs_seg:refine_model`` (the same algorithm as the toolbox)
   in a QgsTask: the next model version, the image re-predicted (the current map extent inside
   the previous round's layers, or the whole layer), what changed, and the round's score on
   held-out corrections next to the parent's and the previous round's.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from qgis.core import (QgsCoordinateTransform, QgsMapLayerProxyModel, QgsProject,
                       QgsRasterLayer, QgsRectangle, QgsReferencedRectangle, QgsVectorLayer)
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                                 QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget)

from .. import corrections as fixes
from ..tasks import RunOutcome
from .messages import InputProblem, guarded
from .model_manager import read_entry
from .results import add_results
from .widgets import DeviceCombo, ModelPicker, hint, raster_combo, spin
from .. import layers

REFINE_ALG = "rs_seg:refine_model"
SEGMENT_ALG = "rs_seg:segment"
ROUND_LAYERS = (
    ("OUTPUT_DIFFERENCE", "Changed class", "raster", lambda r: layers.style_class_raster, True),
    ("OUTPUT", "Classes", "raster", lambda r: layers.style_class_raster, True),
    ("OUTPUT_UNCERTAINTY", "Uncertainty", "raster", lambda r: None, False),
)


def on_grid(layer: Optional[QgsRasterLayer], reference: QgsRasterLayer) -> bool:
    """Whether ``layer`` lies pixel for pixel on ``reference``'s grid (the uncertainty layer's):
    only then can its cells be read beside the uncertainty's."""
    return (layer is not None and layer.crs() == reference.crs()
            and (layer.width(), layer.height(), layer.extent())
            == (reference.width(), reference.height(), reference.extent()))


def next_model_path(model: str, folder: Path, round_: int) -> Path:
    """``<name>_round<N>.rsmodel`` in ``folder`` (the name without an earlier round suffix);
    never an existing file."""
    stem = re.sub(r"_round\d+(_\d+)?$", "", Path(model).stem)
    path, n = folder / f"{stem}_round{round_}.rsmodel", 2
    while path.exists():
        path, n = folder / f"{stem}_round{round_}_{n}.rsmodel", n + 1
    return path


def score_text(results: Dict[str, Any], card: Dict[str, Any]) -> str:
    """The round's score next to the parent's and the previous round's, and what changed."""
    def pct(value: Any) -> str:
        return f"{100 * value:.1f} %" if isinstance(value, (int, float)) else "n/a"
    lineage = card.get("lineage") or {}
    scores = lineage.get("scores") or {}
    previous = (scores.get("previous_round") or {}).get("accuracy")
    text = (f"Round {results.get('ROUND')}: held-out accuracy {pct(results.get('HELD_OUT_ACCURACY'))}"
            f" (this round's parent {pct(results.get('PARENT_ACCURACY'))}, previous round "
            f"{pct(previous)})" if scores else
            f"Round {results.get('ROUND')}: no score this round (too few new corrections to "
            f"hold any out)")
    changed = results.get("CHANGED_M2")
    if isinstance(changed, (int, float)):
        text += f"; {changed:,.0f} m² changed class"
    if lineage.get("start") == "fresh":
        text += (f"; trained afresh: the model had {pct(lineage.get('parent_agreement'))} of "
                 f"the reviewed pixels right")
    return text + "."


class ReviewTab(QWidget):
    """Widgets and actions of the analyst's loop; runs go through ``start`` (the dock's)."""

    model_written = pyqtSignal(str)

    def __init__(self, iface: Any, models_folder: Callable[[], Path],
                 start: Callable[..., Any], parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.iface, self._folder, self._start = iface, models_folder, start
        self.image = raster_combo()
        self.model = ModelPicker("segmentation", models_folder)
        self.prediction = raster_combo(allow_empty=True)
        self.uncertainty = raster_combo(allow_empty=True)
        self.corrections = QgsMapLayerComboBox()
        self.corrections.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.corrections.setAllowEmptyLayer(True)
        self.corrections.setLayer(self._project_corrections())
        self.new_corrections = QPushButton("New…")
        self.new_corrections.setToolTip("Create a corrections GeoPackage beside the project, "
                                        "with the model's classes")
        self.segment = QPushButton("Segment with uncertainty")
        self.segment.setToolTip("Runs Processing ▸ RS Seg ▸ Segment raster with its uncertainty "
                                "output; the classes and uncertainty layers are then used here")
        self.find = QPushButton("List unsure places in view")
        self.find.setToolTip("The places are shared among parts of the image that look alike, "
                             "in proportion to their area, the most unsure of each first: a "
                             "model sure where it is wrong is listed there too")
        self.places = QListWidget()
        self.places.setMinimumHeight(80)
        self.next = QPushButton("Next place to check")
        self.reviewed = QPushButton("Mark reviewed")
        self.draw = QPushButton("Draw a correction")
        self.klass = QComboBox()
        self.copy = QPushButton("Copy selected polygons as")
        self.copy.setToolTip("Copies the polygons selected in the active layer (e.g. the class "
                             "polygons) into the corrections with the chosen class")
        self.budget = spin(10, 3600, 120, step=30)
        self.budget.setSuffix(" s")
        self.device = DeviceCombo()
        self.scope = QComboBox()
        self.scope.addItem("Current extent", "extent")
        self.scope.addItem("Whole layer", "layer")
        self.scope.setToolTip("Current extent: only the map view is re-predicted, inside the "
                              "model's classes and uncertainty layers (faster); whole layer: "
                              "the whole image")
        self.run = QPushButton("Fine-tune on corrections and re-predict")
        self.run.setToolTip("Runs Processing ▸ RS Seg ▸ Refine model on corrections in the "
                            "background")
        self.score = QLabel("No round yet.")
        self.score.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Image", self.image)
        form.addRow("Model", self.model)
        form.addRow("Its classes", self.prediction)
        form.addRow("Its uncertainty", self.uncertainty)
        row = QHBoxLayout()
        row.addWidget(self.corrections, 1)
        row.addWidget(self.new_corrections)
        form.addRow("Corrections", row)
        check = QGroupBox("1. Where the model is unsure")
        box = QVBoxLayout(check)
        box.addWidget(self.segment)
        box.addWidget(self.find)
        box.addWidget(self.places)
        buttons = QHBoxLayout()
        buttons.addWidget(self.next)
        buttons.addWidget(self.reviewed)
        box.addLayout(buttons)
        correct = QGroupBox("2. Correct")
        box = QVBoxLayout(correct)
        box.addWidget(self.draw)
        copy_row = QHBoxLayout()
        copy_row.addWidget(self.copy)
        copy_row.addWidget(self.klass, 1)
        box.addLayout(copy_row)
        refine = QGroupBox("3. Fine-tune")
        refine_form = QFormLayout(refine)
        refine_form.addRow("Time budget", self.budget)
        refine_form.addRow("Device", self.device)
        refine_form.addRow("Re-predict", self.scope)
        refine_form.addRow(self.run)
        refine_form.addRow(self.score)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(hint("Start with 'Segment with uncertainty', or choose the classes and "
                              "uncertainty layers of an earlier run (Segment raster with "
                              "Uncertainty)."))
        for group in (check, correct, refine):
            layout.addWidget(group)
        layout.addStretch(1)

        self.model.changed.connect(self._model_changed)
        self.new_corrections.clicked.connect(self.create_corrections)
        self.segment.clicked.connect(self.run_segment)
        self.find.clicked.connect(self.find_places)
        self.next.clicked.connect(self.next_place)
        self.reviewed.clicked.connect(self.mark_reviewed)
        self.draw.clicked.connect(self.start_drawing)
        self.copy.clicked.connect(self.copy_selected)
        self.run.clicked.connect(self.run_refine)
        self._model_changed(self.model.path())

    # ---- state ---------------------------------------------------------------------------------

    def _classes(self) -> List[Dict[str, Any]]:
        path = self.model.path()
        return list((read_entry(path).card or {}).get("classes", [])) if path else []

    def _model_changed(self, *_: object) -> None:
        self.klass.clear()
        for c in self._classes():
            self.klass.addItem(f"{c['value']} {c['name']}", int(c["value"]))

    def _project_corrections(self) -> Optional[QgsVectorLayer]:
        for layer in QgsProject.instance().mapLayers().values():
            if isinstance(layer, QgsVectorLayer) and layer.source().endswith(
                    f"layername={fixes.CORRECTIONS_LAYER}"):
                return layer
        return None

    def reviewed_layer(self) -> Optional[QgsVectorLayer]:
        """The ``reviewed`` layer of the chosen corrections file (loaded when missing)."""
        layer = self.corrections.currentLayer()
        if layer is None:
            return None
        source = layer.source().split("|")[0] + f"|layername={fixes.REVIEWED_LAYER}"
        for other in QgsProject.instance().mapLayers().values():
            if other.source() == source:
                return other
        reviewed = QgsVectorLayer(source, "Reviewed places", "ogr")
        if not reviewed.isValid():
            return None
        QgsProject.instance().addMapLayer(reviewed)
        return reviewed

    def _need(self, widget: QgsMapLayerComboBox, what: str) -> Any:
        layer = widget.currentLayer()
        if layer is None:
            raise InputProblem(f"choose {what} first")
        return layer

    # ---- 1. places -----------------------------------------------------------------------------

    @guarded(lambda self: self.iface)
    def run_segment(self, *_: object) -> Any:
        """Segment the image with the model, writing its uncertainty too, in the background."""
        image = self._need(self.image, "the image")
        model = self.model.path()
        if not model:
            raise InputProblem("choose the model first")
        params = {"INPUT": image.source(), "MODEL": model, "DEVICE": self.device.value(),
                  "OUTPUT": "TEMPORARY_OUTPUT", "OUTPUT_UNCERTAINTY": "TEMPORARY_OUTPUT"}
        name = f"Review {image.name()} with {Path(model).stem}"
        return self._start(SEGMENT_ALG, params, name,
                           lambda outcome: self._use(add_results(name, outcome.results,
                                                                 ROUND_LAYERS)))

    def _use(self, group: Any) -> None:
        """Make a result group's classes and uncertainty the layers the tab works on."""
        found = {layer.name(): layer for layer in (n.layer() for n in group.findLayers())}
        if "Classes" in found:
            self.prediction.setLayer(found["Classes"])
        if "Uncertainty" in found:
            self.uncertainty.setLayer(found["Uncertainty"])
        self.places.clear()

    @guarded(lambda self: self.iface)
    def find_places(self, *_: object) -> int:
        """List the least certain places of the uncertainty layer in the current view."""
        from engine.analysis.unsure import unsure_places
        layer: QgsRasterLayer = self._need(self.uncertainty, "the model's uncertainty layer "
                                                             "(Segment with Uncertainty)")
        canvas = self.iface.mapCanvas()
        to_layer = QgsCoordinateTransform(canvas.mapSettings().destinationCrs(), layer.crs(),
                                          QgsProject.instance())
        view = to_layer.transformBoundingBox(canvas.extent())
        classes, image = self.prediction.currentLayer(), self.image.currentLayer()
        places = unsure_places(layer.source(), (view.xMinimum(), view.yMinimum(),
                                                view.xMaximum(), view.yMaximum()),
                               exclude=fixes.reviewed_bounds(self.reviewed_layer(), layer.crs()),
                               corrected=fixes.polygons_in(self.corrections.currentLayer(),
                                                           layer.crs()),
                               prediction=classes.source() if on_grid(classes, layer) else None,
                               image=image.source() if on_grid(image, layer) else None)
        self.places.clear()
        for place in places:
            item = QListWidgetItem(f"{place.rank}. {100 * place.uncertainty:.0f} % unsure")
            item.setData(Qt.ItemDataRole.UserRole, place.bounds)
            self.places.addItem(item)
        if not places:
            self.places.addItem("No unsure place left in this view.")
        return len(places)

    @guarded(lambda self: self.iface)
    def next_place(self, *_: object) -> None:
        """Zoom to the next place of the list."""
        row = self.places.currentRow() + 1
        if row >= self.places.count() or self.places.item(row).data(Qt.ItemDataRole.UserRole) is None:
            raise InputProblem("no further place in the list; list the places again")
        self.places.setCurrentRow(row)
        self._zoom(self.places.item(row).data(Qt.ItemDataRole.UserRole))

    def _zoom(self, bounds: Any) -> None:
        layer = self.uncertainty.currentLayer()
        canvas = self.iface.mapCanvas()
        rect = QgsRectangle(*bounds)
        if layer is not None:
            rect = QgsCoordinateTransform(layer.crs(), canvas.mapSettings().destinationCrs(),
                                          QgsProject.instance()).transformBoundingBox(rect)
        canvas.setExtent(rect.buffered(rect.width() * 0.5))
        canvas.refresh()

    @guarded(lambda self: self.iface)
    def mark_reviewed(self, *_: object) -> None:
        """Record the current place as reviewed, then go to the next one."""
        item = self.places.currentItem()
        if item is None or item.data(Qt.ItemDataRole.UserRole) is None:
            raise InputProblem("pick a place in the list (Next place to check) first")
        reviewed = self.reviewed_layer()
        if reviewed is None:
            raise InputProblem("choose or create the corrections layer first (New…)")
        fixes.mark_reviewed(reviewed, QgsRectangle(*item.data(Qt.ItemDataRole.UserRole)),
                            self.uncertainty.currentLayer().crs())
        item.setText(f"{item.text()} — reviewed")
        item.setData(Qt.ItemDataRole.UserRole, None)
        if self.places.currentRow() + 1 < self.places.count():
            self.next_place()

    # ---- 2. corrections ------------------------------------------------------------------------

    @guarded(lambda self: self.iface)
    def create_corrections(self, *_: object) -> QgsVectorLayer:
        """A new corrections GeoPackage for the image, with the model's classes."""
        image = self._need(self.image, "the image")
        if not self.model.path():
            raise InputProblem("choose the model first: its classes become the class choices")
        layer, _reviewed = fixes.create_layers(image.source(), image.crs(), self._classes())
        self.corrections.setLayer(layer)
        return layer

    @guarded(lambda self: self.iface)
    def start_drawing(self, *_: object) -> None:
        """Edit the corrections layer and start QGIS's add-polygon tool."""
        layer = self._need(self.corrections, "the corrections layer (New…)")
        self.iface.setActiveLayer(layer)
        if not layer.isEditable():
            layer.startEditing()
        self.iface.actionAddFeature().trigger()

    @guarded(lambda self: self.iface)
    def copy_selected(self, *_: object) -> int:
        """Copy the active layer's selected polygons into the corrections with the chosen class."""
        target = self._need(self.corrections, "the corrections layer (New…)")
        source = self.iface.activeLayer()
        if not isinstance(source, QgsVectorLayer) or source is target \
                or not source.selectedFeatureCount():
            raise InputProblem("select predicted polygons in another layer (e.g. the class "
                             "polygons) first")
        if self.klass.currentData() is None:
            raise InputProblem("choose the model first: its classes are the choices")
        return fixes.copy_with_class(source, target, int(self.klass.currentData()))

    # ---- 3. refine -----------------------------------------------------------------------------

    def parameters(self) -> Dict[str, Any]:
        """The ``rs_seg:refine_model`` parameters of the tab's choices."""
        image = self._need(self.image, "the image")
        corrections = self._need(self.corrections, "the corrections layer (New…)")
        model = self.model.path()
        if not model:
            raise InputProblem("choose the model to refine")
        for layer in (corrections, self.reviewed_layer()):
            if layer is not None and layer.isEditable() and not layer.commitChanges():
                raise InputProblem(f"cannot save the edits of {layer.name()}: "
                                 f"{'; '.join(layer.commitErrors())}")
        card = read_entry(model).card or {}
        round_ = int((card.get("lineage") or {}).get("round", 0)) + 1
        prediction, uncertainty = self.prediction.currentLayer(), self.uncertainty.currentLayer()
        reviewed = self.reviewed_layer()
        both = prediction is not None and uncertainty is not None
        extent = None
        if self.scope.currentData() == "extent":
            if not both:
                raise InputProblem("re-predicting the current extent updates the model's classes "
                                   "and uncertainty layers: choose them (or 'Segment with "
                                   "uncertainty' first), or re-predict the whole layer")
            canvas = self.iface.mapCanvas()
            extent = QgsReferencedRectangle(canvas.extent(),
                                            canvas.mapSettings().destinationCrs())
        return {"INPUT": image.source(), "MODEL": model,
                "CORRECTIONS": corrections.source(), "CLASS_FIELD": fixes.CLASS_FIELD,
                "REVIEWED": reviewed.source() if reviewed is not None else None,
                "PREDICTION": prediction.source() if both else None,
                "UNCERTAINTY": uncertainty.source() if both else None,
                "TIME_BUDGET": self.budget.value(), "DEVICE": self.device.value(),
                "OUTPUT_MODEL": str(next_model_path(model, self._folder(), round_)),
                "OUTPUT": "TEMPORARY_OUTPUT", "OUTPUT_UNCERTAINTY": "TEMPORARY_OUTPUT",
                "OUTPUT_DIFFERENCE": "TEMPORARY_OUTPUT" if both else None, "EXTENT": extent}

    @guarded(lambda self: self.iface)
    def run_refine(self, *_: object) -> Any:
        """Fine-tune on the corrections and re-predict, in the background."""
        params = self.parameters()
        name = f"Refine → {Path(params['OUTPUT_MODEL']).name}"
        return self._start(REFINE_ALG, params, name, self._refine_done)

    def _refine_done(self, outcome: RunOutcome) -> None:
        results = outcome.results
        model = str(results.get("OUTPUT_MODEL"))
        self._use(add_results(f"Round {results.get('ROUND')}", results, ROUND_LAYERS))
        self.model.refresh(model)
        self.model_written.emit(model)
        self.score.setText(score_text(results, read_entry(model).card or {}))
