"""Install dependencies: the dialog (choices with sizes, wheel folder, proxy, progress, cancel)
and the non-blocking first-run prompt in the message bar."""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

from qgis.core import Qgis, QgsSettings
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import (QButtonGroup, QDialog, QDialogButtonBox, QFormLayout,
                                 QGroupBox, QLabel, QLineEdit, QPlainTextEdit, QProgressBar,
                                 QPushButton, QRadioButton, QVBoxLayout, QWidget)

from .. import deps
from ..installer import folder, pip
from ..installer.choices import Choice, choices
from ..installer.task import InstallTask, private_root, start_install
from .widgets import folder_widget, hint

WHEEL_FOLDER_KEY = "rs_seg/install_wheel_folder"
PROXY_KEY = "rs_seg/install_proxy"


class InstallDialog(QDialog):
    """Pick a choice, optionally a wheel folder and proxy; Install runs an :class:`InstallTask`.

    ``options`` (the three choices by default) and ``root`` (the profile's private folder) are
    parameters so tests can install tiny wheels into a temporary folder.  ``installed`` is
    emitted after each install task ended (whatever the outcome).
    """

    installed = pyqtSignal()

    def __init__(self, parent: Optional[QWidget] = None, options: Optional[List[Choice]] = None,
                 root: Optional[Path] = None, driver: Optional[str] = "probe") -> None:
        super().__init__(parent)
        self.setWindowTitle("RS Seg — install dependencies")
        driver = deps.nvidia_driver() if driver == "probe" else driver
        self.root = root or private_root()
        self.options = options if options is not None else choices(driver)
        self.task: Optional[InstallTask] = None
        health = folder.check(self.root)

        intro = QLabel(
            f"RS Seg installs its packages into its own folder in your QGIS profile, "
            f"<code>{self.root}</code>. No administrator rights are needed, and QGIS's own "
            f"packages (numpy, GDAL, rasterio, shapely…) are never touched.")
        intro.setWordWrap(True)
        self.state = QLabel(self._state_text(health))
        self.state.setWordWrap(True)
        box = QGroupBox("What to install")
        box_layout = QVBoxLayout(box)
        self.group = QButtonGroup(self)
        default = self._default(health)
        for index, choice in enumerate(self.options):
            button = QRadioButton(choice.label)
            button.setEnabled(choice.available)
            if not choice.available:
                button.setText(f"{choice.label} — {choice.reason}")
            button.setChecked(index == default)
            self.group.addButton(button, index)
            box_layout.addWidget(button)
        self.wheel_folder = folder_widget("empty: download from PyPI / download.pytorch.org")
        self.wheel_folder.setFilePath(QgsSettings().value(WHEEL_FOLDER_KEY, "", type=str))
        self.proxy = QLineEdit(QgsSettings().value(PROXY_KEY, "", type=str))
        self.proxy.setPlaceholderText("http://user:password@proxy.example.org:8080 "
                                      "(empty: none, or pip's own settings)")
        network = QFormLayout()
        network.addRow("Wheel folder (offline)", self.wheel_folder)
        network.addRow("Proxy", self.proxy)
        self.command = QPlainTextEdit()
        self.command.setReadOnly(True)
        self.command.setMaximumHeight(70)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)  # -1 (Qt's "reset") would hide the text
        self.progress.setFormat("idle")
        self.progress.setTextVisible(True)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setPlaceholderText("pip's progress appears here.")
        self.outcome = QLabel("")
        self.outcome.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.install_button = QPushButton("Repair" if health.state == "broken" else "Install")
        self.cancel_button = QPushButton("Cancel install")
        self.cancel_button.setEnabled(False)
        buttons.addButton(self.install_button, QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        self.install_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.group.buttonToggled.connect(lambda *_: self._show_command())
        self.wheel_folder.fileChanged.connect(lambda *_: self._show_command())
        self.proxy.textChanged.connect(lambda *_: self._show_command())

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.state)
        layout.addWidget(box)
        layout.addLayout(network)
        layout.addWidget(hint("The pip command (first a dry run against QGIS's packages, then "
                              "only the missing ones into a staging folder that replaces the "
                              "old one when complete; cancel or failure keeps the old one):"))
        layout.addWidget(self.command)
        layout.addWidget(self.progress)
        layout.addWidget(self.log, 1)
        layout.addWidget(self.outcome)
        layout.addWidget(buttons)
        self._show_command()
        self.resize(760, 620)

    def _default(self, health: folder.Health) -> int:
        """Repair reinstalls what was there; otherwise GPU when there is one, else CPU."""
        keys = [c.key for c in self.options]
        wanted = health.choice if health.state != "none" else \
            next((c.key for c in self.options if c.key == "gpu" and c.available), "cpu")
        for key in (wanted, "cpu"):
            if key in keys and self.options[keys.index(key)].available:
                return keys.index(key)
        return next((i for i, c in enumerate(self.options) if c.available), 0)

    @staticmethod
    def _state_text(health: folder.Health) -> str:
        if health.state == "broken":
            return f"<b>Damaged:</b> {health.problem}. Repair reinstalls it."
        if health.state == "ok":
            return (f"Installed now: {health.marker.get('label', '?')} "
                    f"({health.marker.get('installed', '')}). Installing again replaces it.")
        return "Nothing installed by RS Seg yet."

    def choice(self) -> Choice:
        """The selected choice."""
        return self.options[max(self.group.checkedId(), 0)]

    def pip_options(self) -> pip.PipOptions:
        return pip.PipOptions(self.wheel_folder.filePath().strip(), self.proxy.text().strip())

    def _show_command(self) -> None:
        choice, options = self.choice(), self.pip_options()
        resolve = pip.resolve_command(pip.python(), choice, options,
                                      Path("report.json"), Path("qgis-constraints.txt"))
        install = pip.install_command(pip.python(), choice, options,
                                      self.root / "staging-…", [("<resolved>", "…")])
        self.command.setPlainText(" ".join(resolve) + "\n" + " ".join(install))

    def start(self, *_: object) -> Optional[InstallTask]:
        """Start the install in the background (progress here and in the task manager)."""
        if self.task is not None:
            return self.task
        choice, options = self.choice(), self.pip_options()
        if not choice.available:
            self.outcome.setText(f"{choice.label} cannot be installed here: {choice.reason}")
            return None
        QgsSettings().setValue(WHEEL_FOLDER_KEY, options.wheel_folder)
        # a proxy with a password stays out of the profile's settings file
        QgsSettings().setValue(PROXY_KEY, "" if "@" in options.proxy else options.proxy)
        self.log.clear()
        self.outcome.setText("")
        self.task = start_install(choice, options, self.root, self._done)
        self.task.line.connect(self.log.appendPlainText)
        self.task.progressChanged.connect(lambda value: self.progress.setValue(int(value)))
        self.progress.setValue(0)
        self.progress.setFormat(f"{choice.label.split(' (')[0]}: %p%")
        self.install_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        return self.task

    def cancel(self, *_: object) -> None:
        """Stop pip; the previous packages stay as they were."""
        if self.task is not None:
            self.task.cancel()
            self.log.appendPlainText("cancel requested: stopping pip…")

    def _done(self, task: InstallTask) -> None:
        self.task = None
        self.install_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setValue(100 if task.result else 0)
        self.progress.setFormat("done" if task.result else
                                "cancelled" if task.error == "cancelled" else "failed")
        self.outcome.setText(task.message)
        self.state.setText(self._state_text(folder.check(self.root)))
        self.install_button.setText("Install")
        self.installed.emit()


def show_install_dialog(parent: Optional[QWidget] = None) -> InstallDialog:
    """Open the dialog (non-modal) and return it; the caller keeps a reference."""
    dialog = InstallDialog(parent)
    dialog.show()
    dialog.raise_()
    return dialog


def prompt_install(iface: Any, text: str, button_text: str, on_click: Any) -> Any:
    """The first-run prompt: a message-bar line with a button, never a modal dialog.

    Returns the message item; the caller keeps it (and pops it in ``on_click``, a bound method:
    a lambda connected during QGIS's plugin start-up was found freed by the time of the click).
    """
    item = iface.messageBar().createMessage("RS Seg", text)
    button = QPushButton(button_text, item)
    button.clicked.connect(on_click)
    item.layout().addWidget(button)
    iface.messageBar().pushWidget(item, Qgis.Info, 0)
    return item
