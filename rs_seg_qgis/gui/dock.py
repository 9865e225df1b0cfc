"""The RS Seg dock: Segment, Compare dates, Train and Models tabs over one run/log area.

Each Run reads its tab into a state object, turns it into Processing parameters
(:mod:`.params`) and runs the same ``rs_seg:*`` algorithm as the toolbox in a QgsTask
(:mod:`rs_seg_qgis.tasks`).  Completion handlers run on the main thread and add the outputs to
the project in a group named after the run.  Every slot is guarded: a problem becomes a
message-bar line, never a traceback dialog.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any, Dict, List, Optional

from qgis.core import Qgis, QgsProject, QgsTask
from qgis.gui import QgsCollapsibleGroupBox, QgsDockWidget
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (QHBoxLayout, QPlainTextEdit, QProgressBar, QPushButton,
                                 QScrollArea, QTabWidget, QVBoxLayout, QWidget)

from .. import settings
from ..tasks import RunOutcome, start_algorithm
from .card_dialog import ReportDialog
from .change_tab import ChangeTab
from .messages import guarded, notify, notify_done
from .model_manager import require_task
from .models_tab import ModelsTab
from .params import (CHANGE_ALG, SEGMENT_ALG, change_parameters, run_name,
                     segment_parameters, train_parameters)
from .results import add_change_results, add_segment_results
from .segment_tab import SegmentTab
from .train_tab import TrainTab
from .widgets import fit_narrow

MAX_LOG_LINES = 5000


def _scrolled(widget: QWidget) -> QScrollArea:
    """``widget`` in a frameless scroll area, so a narrow or short dock never clips it."""
    area = QScrollArea()
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    return area


class RsSegDock(QgsDockWidget):
    """The plugin's dock widget."""

    def __init__(self, iface: Any, parent: Optional[QWidget] = None) -> None:
        super().__init__("RS Seg", parent)
        self.setObjectName("RsSegDock")
        self.iface = iface
        self.runs: List[QgsTask] = []
        self.dialogs: List[QWidget] = []  # non-modal report dialogs kept alive
        canvas = iface.mapCanvas()
        self.segment = SegmentTab(canvas, settings.models_folder)
        self.change = ChangeTab(settings.models_folder)
        self.train = TrainTab(settings.models_folder)
        self.models = ModelsTab(iface)
        self.tabs = QTabWidget()
        self.tabs.addTab(_scrolled(self.segment), "Segment")
        self.tabs.addTab(_scrolled(self.change), "Compare dates")
        self.tabs.addTab(_scrolled(self.train), "Train")
        self.tabs.addTab(_scrolled(self.models), "Models")
        for tab in (self.segment, self.change, self.train, self.models):
            fit_narrow(tab)

        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setFormat("idle")
        self.progress.setTextVisible(True)
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        self.cancel.setToolTip("Cancel the running RS Seg jobs (also possible from the task "
                               "manager in the status bar)")
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(MAX_LOG_LINES)
        self.log.setPlaceholderText("Progress, loss and metric lines of the runs appear here.")
        self.log.setMinimumHeight(90)
        log_box = QgsCollapsibleGroupBox("Log")
        log_layout = QVBoxLayout(log_box)
        log_layout.setContentsMargins(2, 2, 2, 2)
        log_layout.addWidget(self.log)
        log_box.setCollapsed(True)  # opened by training and by a failure

        # shown only while torch and onnxruntime are missing or the private folder is damaged
        self.install_deps = QPushButton("Install dependencies…")
        self.install_deps.setToolTip("Install torch or onnxruntime into RS Seg's own folder in "
                                     "the QGIS profile (no administrator rights needed)")
        self.refresh_install_button()

        status = QHBoxLayout()
        status.addWidget(self.progress, 1)
        status.addWidget(self.cancel)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.install_deps)
        layout.addWidget(self.tabs, 1)
        layout.addLayout(status)
        layout.addWidget(log_box)
        # as wide as the tab titles: the dock's default width then shows every tab and control
        body.setMinimumWidth(self.tabs.tabBar().sizeHint().width() + 16)
        self.setWidget(body)

        self.segment.run.clicked.connect(self.run_segment)
        self.change.run.clicked.connect(self.run_change)
        self.train.run.clicked.connect(self.run_train)
        self.cancel.clicked.connect(self.cancel_runs)
        self.models.models_changed.connect(self.refresh_models)
        self.models.catalogue.downloaded.connect(self._downloaded)
        self.segment.wants_tab.connect(self.show_tab)
        # new layers: combos showing nothing or a result move to the new imagery
        QgsProject.instance().layersAdded.connect(self.apply_defaults)

    # ---- runs ----------------------------------------------------------------------------------

    @guarded(lambda self: self.iface)
    def run_segment(self, *_: object) -> QgsTask:
        """Segment the chosen layer with the chosen model in the background."""
        state = self.segment.state()
        params = segment_parameters(state)
        require_task(state.model, "segmentation")
        name = run_name("Segment", state.layer_name, state.model)
        return self._start(SEGMENT_ALG, params, name,
                           lambda outcome: self._segment_done(name, outcome))

    @guarded(lambda self: self.iface)
    def run_change(self, *_: object) -> QgsTask:
        """Detect change between the chosen dates in the background."""
        state = self.change.state()
        params = change_parameters(state)
        if state.model:
            require_task(state.model, "change")
        if state.segmentation_model:
            require_task(state.segmentation_model, "segmentation")
        name = run_name("Change", f"{state.before_name} → {state.after_name}", state.model)
        return self._start(CHANGE_ALG, params, name,
                           lambda outcome: self._change_done(name, outcome))

    @guarded(lambda self: self.iface)
    def run_train(self, *_: object) -> QgsTask:
        """Train a model in the background; loss/metric lines go to the log."""
        state = self.train.state()
        algorithm, params = train_parameters(state)
        if state.init_model:
            require_task(state.init_model, state.task)
        name = f"Train {state.architecture} → {Path(params['OUTPUT_MODEL']).name}"
        self.log_box_open()
        return self._start(algorithm, params, name,
                           lambda outcome: self._train_done(state.task, params, outcome))

    def _start(self, algorithm: str, params: Dict[str, Any], name: str, done: Any) -> QgsTask:
        self.append_log(f"▶ {name}")
        task = start_algorithm(algorithm, params, f"RS Seg: {name}",
                               on_done=lambda outcome: self._finished(task_ref, outcome, done),
                               on_line=self.append_log, on_progress=self._progress)
        task_ref = task
        self.runs.append(task)
        self.cancel.setEnabled(True)
        self.progress.setValue(0)
        self.progress.setFormat(f"{name}: %p%")
        return task

    def _finished(self, task: QgsTask, outcome: RunOutcome, done: Any) -> None:
        """Main thread: bookkeeping, then the run's own handler (guarded)."""
        if task in self.runs:
            self.runs.remove(task)
        self.cancel.setEnabled(bool(self.runs))
        if not self.runs:
            self.progress.setValue(0)
            self.progress.setFormat("done — ready" if outcome.ok else
                                    "cancelled" if outcome.cancelled else "failed — see the log")
        if outcome.cancelled:
            self.append_log("■ cancelled")
            notify(self.iface, "Run cancelled; no output was added.", Qgis.Info, 4)
            return
        if not outcome.ok:
            self.append_log(f"✖ {outcome.error}")
            self.log_box_open()
            notify(self.iface, outcome.error, Qgis.Warning)
            return
        self._handle(done, outcome)

    @guarded(lambda self: self.iface)
    def _handle(self, done: Any, outcome: RunOutcome) -> None:
        done(outcome)

    def _progress(self, value: float) -> None:
        self.progress.setValue(int(value))

    def _segment_done(self, name: str, outcome: RunOutcome) -> None:
        add_segment_results(name, outcome.results)
        self.append_log(f"✔ {name}")
        notify_done(self.iface, "Segmentation done: its layers are at the top of the layer "
                                "tree.")

    def _change_done(self, name: str, outcome: RunOutcome) -> None:
        add_change_results(name, outcome.results)
        fraction = outcome.results.get("CHANGED_FRACTION")
        share = f" ({100 * fraction:.2f} % of the pixels changed)" \
            if isinstance(fraction, (int, float)) else ""
        self.append_log(f"✔ {name}{share}")
        notify_done(self.iface, f"Change detection done{share}: its layers are at the top of "
                                f"the layer tree.")

    def _train_done(self, task: str, params: Dict[str, Any], outcome: RunOutcome) -> None:
        model = str(outcome.results.get("OUTPUT_MODEL") or params["OUTPUT_MODEL"])
        self.refresh_models(model)
        dialog = ReportDialog(model, outcome.results.get("BEST_METRIC"),
                              outcome.results.get("OUTPUT_CURVES"), self)
        self.dialogs.append(dialog)
        dialog.show()
        self.append_log(f"✔ trained {model}")
        notify_done(self.iface, f"Trained {Path(model).name}; it is selected in the "
                                f"{'Segment' if task == 'segmentation' else 'Compare dates'} tab.")

    def cancel_runs(self, *_: object) -> None:
        """Ask every running RS Seg job of this dock to stop."""
        for task in list(self.runs):
            task.cancel()
        self.append_log("■ cancel requested")

    # ---- models and log ----------------------------------------------------------------------

    def show_tab(self, name: str) -> None:
        """Show the "models" or "train" tab (the Segment tab's first-run buttons)."""
        widget = {"models": self.models, "train": self.train}[name]
        for index in range(self.tabs.count()):
            page = self.tabs.widget(index)
            if page is widget or (isinstance(page, QScrollArea) and page.widget() is widget):
                self.tabs.setCurrentIndex(index)

    def apply_defaults(self, *_: object) -> None:
        """Default inputs of every tab, where the current choice is empty or a result."""
        for tab in (self.segment, self.change, self.train):
            tab.apply_defaults()

    def _downloaded(self, path: str, task: str) -> None:
        if task == "click":
            self.segment.set_sam_weights(path)

    def refresh_models(self, select: str = "") -> None:
        """Relist models everywhere; select ``select`` in the combos of its task."""
        task = ""
        if select:
            from .model_manager import read_entry
            task = read_entry(select).task
        self.segment.model.refresh(select if task == "segmentation" else "")
        self.change.model.refresh(select if task == "change" else "")
        self.change.segmentation.refresh()
        self.train.init_model.refresh()
        if self.sender() is not self.models:
            self.models.refresh(select)

    def refresh_install_button(self) -> None:
        """Show Install dependencies… (or Repair…) only when something needs installing."""
        from ..installer.startup import prompt
        offer = prompt()
        self.install_deps.setVisible(offer is not None)
        if offer is not None:
            self.install_deps.setText(offer[1])
        self.train.refresh_environment()

    def append_log(self, line: str) -> None:
        stamp = _dt.datetime.now().strftime("%H:%M:%S")
        self.log.appendPlainText(f"{stamp}  {line}")

    def log_box_open(self) -> None:
        box = self.log.parentWidget()
        if isinstance(box, QgsCollapsibleGroupBox):
            box.setCollapsed(False)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt API)
        # tools of this dock must not stay active on the canvas once it is gone
        canvas = self.iface.mapCanvas()
        if canvas.mapTool() is self.segment.rectangle_tool:
            canvas.unsetMapTool(self.segment.rectangle_tool)
        super().closeEvent(event)
