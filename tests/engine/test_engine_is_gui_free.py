"""The engine never imports qgis or PyQt (architecture rule), checked on the source."""
import ast

from tests.conftest import ROOT

FORBIDDEN = ("qgis", "PyQt4", "PyQt5", "PyQt6", "PySide2", "PySide6", "sip")


def imported_modules(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant):
                yield str(node.args[0].value)


def test_no_engine_module_imports_qgis_or_qt():
    files = sorted((ROOT / "engine").rglob("*.py"))
    assert len(files) > 5
    offenders = [(f.relative_to(ROOT), m) for f in files for m in imported_modules(f)
                 if m.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_checker_catches_an_offender(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom qgis.core import QgsRasterLayer\n")
    assert "qgis.core" in list(imported_modules(bad))
