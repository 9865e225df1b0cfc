"""Check environment: versions, GPUs, and what is missing with the exact command to fix it."""
from __future__ import annotations

import importlib
import os
import platform
from pathlib import Path
from typing import Any, List, NamedTuple, Optional

from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtGui import QBrush, QColor, QGuiApplication
from qgis.PyQt.QtWidgets import (QDialog, QDialogButtonBox, QHeaderView, QLabel, QPushButton,
                                 QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from .. import deps


class Check(NamedTuple):
    """One line of the report: what, its value, whether it is fine, and how to fix it.

    ``optional``: not installed but not needed in this state (shown as –, never ✔ or ✖).
    """

    name: str
    value: str
    ok: bool
    fix: str
    optional: bool = False

    @property
    def mark(self) -> str:
        return "–" if self.optional else "✔" if self.ok else "✖"


def _module(name: str, attr: str = "__version__") -> Optional[str]:
    try:
        return str(getattr(importlib.import_module(name), attr, "?"))
    except Exception:  # missing or broken: reported as missing with its fix
        return None


def _library_checks(env: deps.Environment) -> List[Check]:
    checks = []
    for name, label in (("numpy", "numpy"), ("rasterio", "rasterio"),
                        ("safetensors", "safetensors")):
        version = _module(name)
        if name == "rasterio" and version:
            version += f" (GDAL {_module('rasterio', '__gdal_version__')})"
        if version is None and name == "safetensors" and not env.torch:
            # .rsmodel files need it, and torch: the torch line says how to get both
            checks.append(Check(label, "not installed: only .rsmodel files (with torch) need "
                                       "it", True, "", True))
            continue
        checks.append(Check(label, version or "not installed", version is not None,
                            "" if version else deps.install_hint([name])))
    gdal = _module("osgeo.gdal")
    checks.append(Check("GDAL (QGIS)", gdal or "osgeo not importable", gdal is not None,
                        "" if gdal else "install QGIS's Python GDAL bindings "
                                        "(Debian/Ubuntu: apt install python3-gdal)"))
    return checks


def _onnxruntime_check(env: deps.Environment) -> Check:
    version = _module("onnxruntime")
    if version is None:
        fix = f"{deps.INSTALL_BUTTON} ▸ Inference only"
        if env.torch:
            return Check("onnxruntime", "not installed: only ONNX models (e.g. the Deepness "
                                        "zoo) need it", True, f"for ONNX models: {fix}", True)
        return Check("onnxruntime", "not installed", False, fix)
    refused = deps.version_problem("onnxruntime")
    import onnxruntime
    try:
        providers = ", ".join(p.replace("ExecutionProvider", "")
                              for p in onnxruntime.get_available_providers())
    except Exception as exc:  # a damaged or stand-in package: report it, keep the dialog
        return Check("onnxruntime", f"{version} (cannot list execution providers: {exc})", False,
                     f"reinstall it: {deps.INSTALL_BUTTON} ▸ Inference only")
    return Check("onnxruntime", f"{version} ({providers})", refused is None, refused or "")


def _cuda_usable(torch: Any) -> str:
    """'' when a tiny tensor op runs on cuda:0, else why not."""
    try:
        value = (torch.ones(4, device="cuda:0") * 2).sum().item()
        return "" if value == 8 else f"cuda:0 computed {value} instead of 8"
    except Exception as exc:  # the message names the CUDA problem (driver, arch, memory)
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _torch_checks(driver: Optional[str], env: deps.Environment) -> List[Check]:
    version = _module("torch")
    if version is None:
        if env.onnxruntime:  # inference-only is a complete state
            return [Check("torch", "not installed: inference-only setup (ONNX models run "
                                   "without it)", True, "only to train, for change vector "
                                   f"analysis and .rsmodel files: {deps.INSTALL_BUTTON} ▸ CPU "
                                   "training", True)]
        return [Check("torch", "not installed", False, deps.install_hint(["torch"], driver))]
    refused = deps.version_problem("torch")
    import torch
    gpu_fix = (f"{deps.INSTALL_BUTTON} ▸ GPU, or by hand: "
               f"{deps.torch_install_command(deps.cuda_wheel(driver))}")
    cuda_build = torch.version.cuda
    build = f"CUDA {cuda_build} build" if cuda_build else "CPU build"
    checks = [Check("torch", f"{version} ({build}, {Path(torch.__file__).parent})",
                    refused is None, refused or "")]
    if cuda_build is None:
        checks.append(Check("CUDA", "CPU-only torch build" + (" (an NVIDIA driver is present)"
                                                               if driver else ""),
                            not driver, f"for your NVIDIA GPU install the CUDA build: {gpu_fix}"
                            if driver else ""))
    else:
        needed = deps.min_driver(cuda_build)
        have = _driver_number(driver)
        if driver is None:
            checks.append(Check("CUDA", f"{cuda_build} build, but no NVIDIA driver", True,
                                "runs on the CPU; install the NVIDIA driver to use the GPU"))
        elif needed is not None and have is not None and have < needed:
            checks.append(Check("CUDA", f"{cuda_build} build needs driver ≥ {needed:g}; "
                                        f"this one is {driver}", False,
                                f"update the NVIDIA driver to {needed:g} or newer, or install "
                                f"the build your driver runs: {gpu_fix}"))
        else:
            problem = _cuda_usable(torch)
            checks.append(Check("CUDA", f"{cuda_build} " + ("(usable: a tensor op ran on "
                                                            "cuda:0)" if not problem else
                                                            f"(not usable: {problem})"),
                                not problem, "" if not problem else
                                f"check the driver with nvidia-smi; if it is fine, reinstall "
                                f"the matching build: {gpu_fix}"))
    gpus = deps.torch_gpus()
    for gpu in gpus:
        checks.append(Check(f"GPU {gpu.index} (torch)", f"{gpu.name}, {gpu.memory_gib:.1f} GiB",
                            True, ""))
    return checks


def _driver_number(driver: Optional[str]) -> Optional[float]:
    try:
        return float(".".join(str(driver).split(".")[:2]))
    except ValueError:
        return None


def _private_folder_check() -> Check:
    from ..installer import folder
    from ..installer.task import private_root
    root = private_root()
    health = folder.check(root)
    if health.state == "broken":
        return Check("RS Seg packages", health.problem, False,
                     f"Repair: {deps.INSTALL_BUTTON} (reinstalls into a new folder)")
    if health.state == "ok":
        return Check("RS Seg packages", f"{health.marker.get('label', '?')} in {health.site}",
                     True, "")
    return Check("RS Seg packages", f"nothing installed yet ({root})", True, "")


def _pip_check() -> Check:
    from ..installer import pip
    python = pip.python()
    problem = pip.check_python(python)
    return Check("pip (installer)", problem or f"{python} -m pip", problem is None,
                 "" if problem is None else "fix this to use Install dependencies…, or install "
                                            "with the commands shown for torch")


def _nvidia_checks(driver: Optional[str]) -> List[Check]:
    gpus = deps.nvidia_gpus() if driver else []
    if not gpus:
        return [Check("NVIDIA GPUs", f"none found (driver: {driver or 'none'}); inference "
                                     f"and training run on the CPU", True, "")]
    return [Check(f"GPU {g.index}", f"{g.name}, {g.memory_gib:.1f} GiB, driver {g.driver}",
                  True, "") for g in gpus]


def diagnostics(driver: Optional[str] = "probe") -> List[Check]:
    """The environment report as (name, value, ok, fix) rows.

    ``driver`` is the NVIDIA driver version; the default asks nvidia-smi (None: no driver).
    """
    driver = deps.nvidia_driver() if driver == "probe" else driver
    checks = [Check("QGIS", Qgis.QGIS_VERSION, True, ""),
              Check("Python", f"{platform.python_version()} ({deps.python_command()})", True, ""),
              Check("NVIDIA driver", driver or "none found", True, "")]
    checks += _nvidia_checks(driver)
    env = deps.environment()
    checks.append(Check("RS Seg can run", env.summary, env.state != "none", ""))
    checks += _library_checks(env)
    checks += _torch_checks(driver, env)
    checks.append(_onnxruntime_check(env))
    checks.append(_private_folder_check())
    checks.append(_pip_check())
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
        lines.append(f"{'-- ' if c.optional else 'OK ' if c.ok else 'FIX'} {c.name}: {c.value}")
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
        state = next((c.value for c in checks if c.name == "RS Seg can run"), "")
        summary = QLabel(state + ("" if not problems else
                                  f" {len(problems)} problem(s): use Install dependencies… "
                                  f"below, or the command shown under 'Fix'."))
        summary.setWordWrap(True)
        table = QTableWidget(len(checks), 3)
        table.setHorizontalHeaderLabels(["Check", "Value", "Fix"])
        for row, c in enumerate(checks):
            name = QTableWidgetItem(f"{c.mark} {c.name}")
            name.setForeground(QBrush(QColor(110, 110, 110) if c.optional else
                                      QColor(0, 128, 0) if c.ok else QColor(200, 0, 0)))
            table.setItem(row, 0, name)
            table.setItem(row, 1, QTableWidgetItem(c.value))
            fix = QTableWidgetItem(c.fix)
            fix.setToolTip(c.fix)
            table.setItem(row, 2, fix)
        table.verticalHeader().setVisible(False)
        table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        # values (paths) and fixes (commands) are long: fixed value width, fixes get the rest
        table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Interactive)
        table.setColumnWidth(1, 340)
        table.horizontalHeader().setStretchLastSection(True)
        table.setWordWrap(True)
        self.table = table
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = QPushButton("Copy report")
        buttons.addButton(copy, QDialogButtonBox.ButtonRole.ActionRole)
        copy.clicked.connect(self.copy)
        self.install_button = QPushButton("Install dependencies…")
        self.install_button.setToolTip("torch or onnxruntime into RS Seg's own folder in the "
                                       "QGIS profile (also repairs a damaged one)")
        buttons.addButton(self.install_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.install_button.clicked.connect(self.open_installer)
        self.installer: Optional[QDialog] = None
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(summary)
        layout.addWidget(table)
        layout.addWidget(buttons)
        self.resize(1000, 600)

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 (Qt override)
        """Row heights follow the wrapped fixes, which depend on the dialog's final width."""
        super().resizeEvent(event)
        QTimer.singleShot(0, self.table.resizeRowsToContents)

    def open_installer(self, *_: object) -> QDialog:
        """The Install dependencies dialog, on top of this one."""
        from .install_dialog import show_install_dialog
        self.installer = show_install_dialog(self)
        return self.installer

    def copy(self, *_: object) -> None:
        QGuiApplication.clipboard().setText(report_text(self.checks))
