"""Plugin object: registers the Processing provider (headless) and the GUI entries (desktop)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .processing.provider import RsSegProvider

MENU = "&RS Seg"
ICON = str(Path(__file__).resolve().parent / "icon.svg")
CLICK_ICON = str(Path(__file__).resolve().parent / "icon_click.svg")  # a polygon under a pointer


class RsSegPlugin:
    """Created by QGIS through ``classFactory``; ``initProcessing`` is all qgis_process calls."""

    def __init__(self, iface: Any) -> None:
        self.iface = iface
        self.provider: Optional[RsSegProvider] = None
        self.dock: Any = None
        self.map_tool: Any = None
        self.actions: List[QAction] = []
        self.dock_action: Optional[QAction] = None
        self.click_action: Optional[QAction] = None
        self._prompt_item: Any = None  # the first-run prompt in the message bar

    def initProcessing(self) -> None:  # noqa: N802 (QGIS API)
        if self.provider is None:
            self.provider = RsSegProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 (QGIS API)
        self.initProcessing()
        icon = QIcon(ICON)
        main = self.iface.mainWindow()
        self.dock_action = QAction(icon, "RS Seg", main)
        self.dock_action.setCheckable(True)
        self.dock_action.setToolTip("RS Seg: segment, compare dates, train, manage models")
        self.dock_action.toggled.connect(self.show_dock)
        self.click_action = QAction(QIcon(CLICK_ICON), "RS Seg: click to segment", main)
        self.click_action.setCheckable(True)
        self.click_action.setToolTip("Click an object on the map to segment it (uses the layer "
                                     "and model of the RS Seg dock)")
        self.click_action.toggled.connect(self.toggle_click_tool)
        diagnostics = QAction("Check environment…", main)
        diagnostics.triggered.connect(self.show_diagnostics)
        installer = QAction("Install dependencies…", main)
        installer.setToolTip("Install torch or onnxruntime into RS Seg's own folder")
        installer.triggered.connect(self.show_installer)
        for action in (self.dock_action, self.click_action, diagnostics, installer):
            self.iface.addPluginToMenu(MENU, action)
            self.actions.append(action)
        self.iface.addToolBarIcon(self.dock_action)
        self.iface.addToolBarIcon(self.click_action)
        self._prompt_install()

    def unload(self) -> None:
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
            self.iface.removeToolBarIcon(action)
        self.actions.clear()
        if self.map_tool is not None:
            canvas = self.iface.mapCanvas()
            if canvas.mapTool() is self.map_tool:
                canvas.unsetMapTool(self.map_tool)
            self.map_tool.close()
            self.map_tool = None
        if self.dock is not None:
            self.dock.cancel_runs()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

    # ---- GUI ---------------------------------------------------------------------------------

    def ensure_dock(self) -> Any:
        """The dock, made on first use (so QGIS starts fast and torch stays unimported)."""
        if self.dock is None:
            from .gui.dock import RsSegDock
            self.dock = RsSegDock(self.iface, self.iface.mainWindow())
            self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
            self.dock.visibilityChanged.connect(self._dock_visibility)
            self.dock.segment.pick.toggled.connect(self._pick_toggled)
            self.dock.models.check_environment.connect(self.show_diagnostics)
            self.dock.install_deps.clicked.connect(self.show_installer)
        return self.dock

    def show_dock(self, visible: bool = True) -> None:
        try:
            dock = self.ensure_dock()
            dock.setUserVisible(visible)
            if visible:
                dock.raise_()
        except Exception as exc:  # never a traceback dialog from a menu entry
            self._error(exc)

    def _dock_visibility(self, visible: bool) -> None:
        if self.dock_action is not None and self.dock_action.isChecked() != visible:
            self.dock_action.blockSignals(True)
            self.dock_action.setChecked(visible)
            self.dock_action.blockSignals(False)

    def _pick_toggled(self, on: bool) -> None:
        if self.click_action is not None and self.click_action.isChecked() != on:
            self.click_action.setChecked(on)

    def toggle_click_tool(self, on: bool) -> None:
        """Activate (or leave) the click-to-segment map tool."""
        try:
            canvas = self.iface.mapCanvas()
            dock = self.ensure_dock()
            if on:
                if self.map_tool is None:
                    from .gui.map_tool import SegmentMapTool
                    self.map_tool = SegmentMapTool(canvas, self.iface, dock.segment.click_source)
                    self.map_tool.setAction(self.click_action)
                    self.map_tool.deactivated.connect(lambda: self._tool_off())
                dock.setUserVisible(True)
                canvas.setMapTool(self.map_tool)
            elif self.map_tool is not None and canvas.mapTool() is self.map_tool:
                canvas.unsetMapTool(self.map_tool)
            if dock.segment.pick.isChecked() != on:
                dock.segment.pick.setChecked(on)
        except Exception as exc:
            self._error(exc)

    def _tool_off(self) -> None:
        if self.dock is not None and self.dock.segment.pick.isChecked():
            self.dock.segment.pick.setChecked(False)

    def show_diagnostics(self, *_: object) -> None:
        """Run the environment checks and show them."""
        try:
            from .gui.diagnostics import DiagnosticsDialog, diagnostics
            dialog = DiagnosticsDialog(diagnostics(), self.iface.mainWindow())
            dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            dialog.show()
            self._diagnostics_dialog = dialog
        except Exception as exc:
            self._error(exc)

    def show_installer(self, *_: object) -> None:
        """Open the Install dependencies dialog (non-modal; the install is a background task)."""
        try:
            from .gui.install_dialog import show_install_dialog
            self._install_dialog = show_install_dialog(self.iface.mainWindow())
            self._install_dialog.installed.connect(self._installed)
        except Exception as exc:
            self._error(exc)

    def _installed(self) -> None:
        """After an install: stale prompts go, and every message is derived afresh."""
        from .installer.startup import prompt
        if prompt() is None:
            self._pop_prompt()
        if self.dock is not None:
            self.dock.refresh_install_button()
            self.dock.refresh_models()  # pickers that said "needs … not installed" re-read

    def _prompt_install(self) -> None:
        """First run without torch and onnxruntime (or with a damaged folder): a message-bar
        offer to install; desktop only (initGui), so qgis_process never shows it."""
        try:
            from .gui.install_dialog import prompt_install
            from .installer.startup import prompt
            offer = prompt()
            if offer:
                self._prompt_item = prompt_install(self.iface, *offer, self._prompt_answered)
        except Exception as exc:
            self._error(exc)

    def _prompt_answered(self, *_: object) -> None:
        self.show_installer()
        # the item goes once this click was handled: deleting the sender inside its own
        # clicked signal crashes QGIS
        QTimer.singleShot(0, self._pop_prompt)

    def _pop_prompt(self) -> None:
        item, self._prompt_item = self._prompt_item, None
        if item is not None:
            self.iface.messageBar().popWidget(item)

    def _error(self, exc: BaseException) -> None:
        from .gui.messages import error_text, notify
        notify(self.iface, error_text(exc), Qgis.Critical)
