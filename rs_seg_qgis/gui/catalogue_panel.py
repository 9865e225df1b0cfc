"""Get models: the catalogue (built-in + the user's) in the Models tab, downloaded by
``rs_seg:download_model`` in the background (progress, cancel, resume, checksum, QGIS proxy)."""
from __future__ import annotations

import html
from typing import Any, List, Optional

from qgis.core import Qgis, QgsSettings
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem,
                                 QProgressBar, QPushButton, QVBoxLayout, QWidget)

from .. import settings
from ..network import proxy_url
from ..processing.download_model import entry_label
from ..tasks import RunOutcome, start_algorithm
from .messages import guarded, notify, notify_done

CATALOGUE_KEY = "rs_seg/extra_catalogue"
TASK_WORDS = {"click": "click to segment objects (SAM)", "segmentation": "segmentation",
              "change": "change detection"}


def entry_html(entry: Any) -> str:
    """What an analyst needs to choose: task, classes, bands, GSD, size, licence, checksum."""
    e = html.escape
    classes = ", ".join(entry.classes) if entry.classes else "any object you click"
    gsd = f"{entry.gsd_m:g} m per pixel" if entry.gsd_m else "any resolution"
    rows = [("Task", TASK_WORDS.get(entry.task, entry.task)), ("Classes", classes),
            ("Bands", ", ".join(entry.bands) or "?"), ("Trained at", gsd),
            ("Size", entry.size_text), ("Licence", entry.licence),
            ("Checksum", entry.checksum_text)]
    body = "".join(f"<b>{e(k)}:</b> {e(v)}<br>" for k, v in rows)
    source = f'<a href="{e(entry.source)}">source page</a>' if entry.source else ""
    return f"<b>{e(entry.title)}</b><br>{e(entry.description)}<br>{body}{source}"


class CataloguePanel(QWidget):
    """The catalogue list, its details, an extra catalogue field and Download/Cancel.

    ``downloaded(path, task)`` is emitted on the main thread when a model arrived.
    """

    downloaded = pyqtSignal(str, str)

    def __init__(self, iface: Any, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.iface = iface
        self.entries: List[Any] = []
        self.task: Any = None
        self.list = QListWidget()
        self.list.setMinimumHeight(120)
        self.list.setWordWrap(True)
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setOpenExternalLinks(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.extra = QLineEdit(QgsSettings().value(CATALOGUE_KEY, "", type=str))
        self.extra.setPlaceholderText("your organisation's catalogue: JSON file or https://…")
        self.extra.setToolTip("A catalogue in RS Seg's JSON format (docs/models.md, 'Model "
                              "catalogues'); its models are listed after the built-in ones")
        self.reload = QPushButton("Load")
        self.download = QPushButton("Download")
        self.download.setToolTip("Into the models folder; resumes an interrupted download and "
                                 "checks the published checksum. Uses QGIS's proxy settings.")
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setFormat("%p%")
        self.progress.setVisible(False)

        extra_row = QHBoxLayout()
        extra_row.addWidget(self.extra, 1)
        extra_row.addWidget(self.reload)
        buttons = QHBoxLayout()
        buttons.addWidget(self.download, 1)
        buttons.addWidget(self.cancel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.details)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addLayout(extra_row)

        self.list.currentRowChanged.connect(self._show)
        self.reload.clicked.connect(self.load)
        self.extra.returnPressed.connect(self.load)
        self.download.clicked.connect(self.start_download)
        self.cancel.clicked.connect(self.cancel_download)
        self.load()

    @guarded(lambda self: self.iface)
    def load(self, *_: object) -> None:
        """(Re)read the built-in catalogue and the extra one."""
        from engine.formats.model_catalogue import load_catalogues
        extra = self.extra.text().strip()
        QgsSettings().setValue(CATALOGUE_KEY, extra)
        self.entries = load_catalogues([extra] if extra else [], proxy_url())
        folder = settings.models_folder()
        self.list.clear()
        for entry in self.entries:
            have = (folder / entry.file).is_file()
            item = QListWidgetItem(f"{'✔ ' if have else ''}{entry_label(entry)}")
            item.setToolTip("already in the models folder" if have else entry.url)
            item.setData(Qt.ItemDataRole.UserRole, entry.name)
            self.list.addItem(item)
        if self.entries:
            self.list.setCurrentRow(0)

    def current(self) -> Any:
        row = self.list.currentRow()
        return self.entries[row] if 0 <= row < len(self.entries) else None

    def select(self, name: str) -> None:
        """Make catalogue entry ``name`` current."""
        for row, entry in enumerate(self.entries):
            if entry.name == name:
                self.list.setCurrentRow(row)

    def _show(self, *_: object) -> None:
        entry = self.current()
        self.details.setText(entry_html(entry) if entry else "The catalogue is empty.")
        self.download.setEnabled(entry is not None and self.task is None)

    @guarded(lambda self: self.iface)
    def start_download(self, *_: object) -> Any:
        """Run rs_seg:download_model for the selected entry in the background."""
        entry = self.current()
        if entry is None or self.task is not None:
            return None
        extra = self.extra.text().strip()
        params = {"NAME": entry.name, "CATALOGUE": extra,
                  "FOLDER": str(settings.models_folder())}
        self.task = start_algorithm("rs_seg:download_model", params,
                                    f"RS Seg: download {entry.title}",
                                    on_done=lambda outcome: self._done(entry, outcome),
                                    on_progress=lambda v: self.progress.setValue(int(v)))
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.download.setEnabled(False)
        self.cancel.setEnabled(True)
        return self.task

    def cancel_download(self, *_: object) -> None:
        if self.task is not None:
            self.task.cancel()

    def _done(self, entry: Any, outcome: RunOutcome) -> None:
        self.task = None
        self.cancel.setEnabled(False)
        self.progress.setVisible(False)
        if outcome.ok:
            path = str(outcome.results.get("OUTPUT"))
            self.load()
            self.select(entry.name)
            where = ("Segment tab ▸ Click to segment" if entry.task == "click" else
                     "Compare dates tab" if entry.task == "change" else "Segment tab")
            notify_done(self.iface, f"Downloaded {entry.title}; it is selected in the {where}.")
            self.downloaded.emit(path, entry.task)
        elif outcome.cancelled:
            notify(self.iface, "Download cancelled; Download again resumes it.", Qgis.Info, 6)
        else:
            notify(self.iface, outcome.error, Qgis.Warning)
        self._show()
