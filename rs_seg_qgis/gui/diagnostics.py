"""Check environment: versions, GPUs, and what is missing with the exact command to fix it."""
from __future__ import annotations

import importlib
import os
import platform
from typing import List, NamedTuple, Optional

from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtGui import QBrush, QColor, QGuiApplication
from qgis.PyQt.QtWidgets import (QDialog, QDialogButtonBox, QHeaderView, QLabel, QPushButton,
                                 QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from .. import deps


class Check(NamedTuple):
    """One line of the report: what, its value, whether it is fine, and how to fix it."""

    name: str
    value: str
    ok: bool
    fix: str


def _module(name: str, attr: str = "__version__") -> Optional[str]:
    try:
        return str(getattr(importlib.import_module(name), attr, "?"))
    except Exception:  # missing or broken: reported as missing with its fix
        return None


def _library_checks() -> List[Check]:
    checks = []
    for name, label in (("numpy", "numpy"), ("rasterio", "rasterio"),
                        ("safetensors", "safetensors")):
        version = _module(name)
        if name == "rasterio" and version:
            version += f" (GDAL {_module('rasterio', '__gdal_version__')})"
        checks.append(Check(label, version or "missing", version is not None,
                            "" if version else deps.install_hint([name])))
    return checks


def _torch_checks(driver: Optional[str]) -> List[Check]:
    version = _module("torch")
    if version is None:
        return [Check("torch", "missing", False, deps.install_hint(["torch"], driver))]
    import torch
    checks = [Check("torch", version, True, "")]
    cuda_build = torch.version.cuda
    if cuda_build is None:
        fix = (f"for your NVIDIA GPU install the CUDA build: "
               f"{deps.torch_install_command(deps.cuda_wheel(driver))}") if driver else ""
        checks.append(Check("CUDA", "CPU-only torch build" + (" (an NVIDIA driver is present)"
                                                               if driver else ""),
                            not driver, fix))
    else:
        available = torch.cuda.is_available()
        fix = "" if available or not driver else (
            f"torch's CUDA {cuda_build} does not run on driver {driver}: update the NVIDIA "
            f"driver or install {deps.torch_install_command(deps.cuda_wheel(driver))}")
        checks.append(Check("CUDA", f"{cuda_build} ({'available' if available else 'no GPU'})",
                            available or not driver, fix))
    gpus = deps.torch_gpus()
    for gpu in gpus:
        checks.append(Check(f"GPU {gpu.index}", f"{gpu.name}, {gpu.memory_gib:.1f} GiB", True, ""))
    if not gpus:
        checks.append(Check("GPUs", "none (inference and training run on the CPU)", True, ""))
    return checks


def diagnostics(driver: Optional[str] = "probe") -> List[Check]:
    """The environment report as (name, value, ok, fix) rows.

    ``driver`` is the NVIDIA driver version; the default asks nvidia-smi (None: no driver).
    """
    driver = deps.nvidia_driver() if driver == "probe" else driver
    checks = [Check("QGIS", Qgis.QGIS_VERSION, True, ""),
              Check("Python", f"{platform.python_version()} ({deps.python_command()})", True, ""),
              Check("NVIDIA driver", driver or "none found", True, "")]
    checks += _library_checks()
    checks += _torch_checks(driver)
    engine_version = _module("engine")
    checks.append(Check("RS Seg engine", engine_version or "not importable",
                        engine_version is not None,
                        "" if engine_version else "reinstall the RS Seg plugin from its zip "
                                                  "(the engine ships inside it)"))
    provider = QgsApplication.processingRegistry().providerById("rs_seg")
    checks.append(Check("Processing provider", "rs_seg registered" if provider else "missing",
                        provider is not None,
                        "" if provider else "enable RS Seg in Plugins ▸ Manage and Install "
                                            "Plugins"))
    from ..settings import models_folder
    folder = models_folder()
    writable = os.access(folder, os.W_OK)
    checks.append(Check("Models folder", str(folder), writable,
                        "" if writable else "choose a writable models folder in the Models tab"))
    return checks


def report_text(checks: List[Check]) -> str:
    """The report as plain text (for the clipboard and bug reports)."""
    lines = []
    for c in checks:
        lines.append(f"{'OK ' if c.ok else 'FIX'} {c.name}: {c.value}")
        if c.fix:
            lines.append(f"    → {c.fix}")
    return "\n".join(lines)


class DiagnosticsDialog(QDialog):
    """The report in a table; fixes are selectable text and the whole report can be copied."""

    def __init__(self, checks: List[Check], parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("RS Seg — environment")
        self.checks = checks
        problems = [c for c in checks if not c.ok]
        summary = QLabel("Everything RS Seg needs is installed." if not problems else
                         f"{len(problems)} problem(s): run the command shown under 'Fix', then "
                         f"restart QGIS.")
        summary.setWordWrap(True)
        table = QTableWidget(len(checks), 3)
        table.setHorizontalHeaderLabels(["Check", "Value", "Fix"])
        for row, c in enumerate(checks):
            name = QTableWidgetItem(("✔ " if c.ok else "✖ ") + c.name)
            name.setForeground(QBrush(QColor(0, 128, 0) if c.ok else QColor(200, 0, 0)))
            table.setItem(row, 0, name)
            table.setItem(row, 1, QTableWidgetItem(c.value))
            fix = QTableWidgetItem(c.fix)
            fix.setToolTip(c.fix)
            table.setItem(row, 2, fix)
        table.verticalHeader().setVisible(False)
        table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeToContents)
        table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeToContents)
        table.horizontalHeader().setStretchLastSection(True)
        table.setWordWrap(True)
        table.resizeRowsToContents()
        self.table = table
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        copy = QPushButton("Copy report")
        buttons.addButton(copy, QDialogButtonBox.ActionRole)
        copy.clicked.connect(self.copy)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(summary)
        layout.addWidget(table)
        layout.addWidget(buttons)
        self.resize(820, 420)

    def copy(self, *_: object) -> None:
        QGuiApplication.clipboard().setText(report_text(self.checks))
