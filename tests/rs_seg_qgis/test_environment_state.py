"""One environment state behind every message: inference-only is complete (no red torch, no
warning outside training), nothing installed says so once, a full install says nothing."""
from __future__ import annotations

import pytest

from rs_seg_qgis import deps
from rs_seg_qgis.installer import startup

pytestmark = pytest.mark.qgis


@pytest.fixture
def state(monkeypatch):
    """Pretend which runtimes are usable: state('torch'), state('onnxruntime'), state()."""
    def set_state(*usable):
        monkeypatch.setattr(deps, "_usable", lambda name: name in usable)
        import rs_seg_qgis.gui.diagnostics as diagnostics_module
        real = diagnostics_module._module
        monkeypatch.setattr(diagnostics_module, "_module", lambda name, attr="__version__": (
            None if name in ("torch", "onnxruntime", "safetensors") and name not in usable
            else real(name, attr)))
    return set_state


def rows():
    from rs_seg_qgis.gui.diagnostics import diagnostics
    return {c.name: c for c in diagnostics(driver=None)}


def test_inference_only_is_a_complete_state(qgis_app, state):
    state("onnxruntime")
    assert deps.environment().state == "inference" and startup.missing_runtimes() == []
    checks = rows()
    assert checks["torch"].optional and checks["torch"].mark == "–"
    assert "CPU training" in checks["torch"].fix
    assert checks["safetensors"].optional
    assert checks["RS Seg can run"].ok and "Inference only" in checks["RS Seg can run"].value


def test_nothing_installed_is_one_problem_with_one_fix(qgis_app, state):
    state()
    assert deps.environment().state == "none"
    assert startup.missing_runtimes() == ["torch", "onnxruntime"]
    checks = rows()
    assert checks["torch"].mark == "✖" and checks["onnxruntime"].mark == "✖"
    assert not checks["RS Seg can run"].ok


def test_no_green_tick_beside_not_installed(qgis_app, state):
    state("torch")
    for check in rows().values():
        assert not (check.mark == "✔" and "not installed" in check.value), check


def test_train_tab_alone_says_training_needs_torch(qgis_iface, state):
    from rs_seg_qgis.gui.dock import RsSegDock
    state("onnxruntime")
    dock = RsSegDock(qgis_iface)
    assert not dock.train.needs_torch.isHidden() and not dock.train.run.isEnabled()
    assert not dock.install_deps.isVisibleTo(dock)  # nothing to install for inference
    state("torch", "onnxruntime")
    dock.refresh_install_button()
    assert dock.train.needs_torch.isHidden() and dock.train.run.isEnabled()
    dock.deleteLater()
