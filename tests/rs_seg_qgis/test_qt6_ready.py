"""Ready for QGIS 4 / Qt 6, while QGIS 3.22 keeps working: the checks QGIS's own
``pyqt5_to_pyqt6.py`` makes (that script is not in Debian's packages), as a scan of the plugin.

* Qt enums by their scoped name (``Qt.ItemDataRole.UserRole``; PyQt6 has no ``Qt.UserRole``),
  found by resolving every ``Class.Member`` of a ``qgis.PyQt`` import against PyQt5 itself;
* ``exec()`` rather than ``exec_()``; no direct ``PyQt5`` imports; no Qt5-only classes;
* ``supportsQt6=True`` in metadata.txt.
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import List, Tuple

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.qgis
PLUGIN = ROOT / "rs_seg_qgis"
QT5_ONLY = {"QRegExp", "QDesktopWidget", "QStringListModel_", "QGLWidget", "QMatrix",
            "QtWebKit", "QtWebKitWidgets", "QSound", "QGLFormat"}


def _is_enum_value(value: object) -> bool:
    """A PyQt5 enum member (its type is a sip enum type, not a class or a function)."""
    kind = type(value)
    return isinstance(value, int) and kind is not int and kind is not bool and \
        type(kind).__name__ == "enumtype"


def unscoped_enums(path: Path) -> List[Tuple[int, str, str]]:
    """(line, 'Qt.UserRole', 'Qt.ItemDataRole.UserRole') for each unscoped Qt enum in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    classes = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("qgis.PyQt"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                classes[alias.asname or alias.name] = getattr(module, alias.name, None)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                node.value.id in classes and classes[node.value.id] is not None:
            value = getattr(classes[node.value.id], node.attr, None)
            if _is_enum_value(value):
                scoped = f"{node.value.id}.{type(value).__name__}.{node.attr}"
                found.append((node.lineno, f"{node.value.id}.{node.attr}", scoped))
    return found


def plugin_files() -> List[Path]:
    return sorted(p for p in PLUGIN.rglob("*.py") if "_vendor" not in p.parts)


def test_qt_enums_are_scoped():
    problems = [f"{p.relative_to(ROOT)}:{line}: {old} → {new}"
                for p in plugin_files()
                for line, old, new in unscoped_enums(p)]
    assert problems == []


def test_the_scan_finds_an_unscoped_enum(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("from qgis.PyQt.QtCore import Qt\nx = Qt.UserRole\ny = Qt.ItemDataRole."
                      "UserRole\n")
    assert unscoped_enums(sample) == [(2, "Qt.UserRole", "Qt.ItemDataRole.UserRole")]


def test_no_qt5_only_api():
    problems = []
    for path in plugin_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "exec_":
                problems.append(f"{path.name}:{node.lineno}: exec_() → exec()")
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    node.value.id == "QVariant":  # Qt 6 has QMetaType.Type (QGIS >= 3.38)
                problems.append(f"{path.name}:{node.lineno}: QVariant.{node.attr}")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) \
                    else [node.module or ""]
                if any(m.split(".")[0] in ("PyQt5", "PyQt6") for m in modules):
                    problems.append(f"{path.name}:{node.lineno}: import from qgis.PyQt")
                names = {a.name for a in node.names}
                if names & QT5_ONLY:
                    problems.append(f"{path.name}:{node.lineno}: Qt5-only {names & QT5_ONLY}")
    assert problems == []


def test_metadata_declares_qt6_support():
    for metadata in (ROOT / "metadata.txt", PLUGIN / "metadata.txt"):
        if metadata.is_file():
            assert "supportsQt6=True" in metadata.read_text().splitlines(), metadata
