"""The plugin loads in QGIS, registers the rs_seg provider, and degrades when torch is missing."""
import configparser
import subprocess

import pytest
from qgis.core import QgsApplication

from tests.conftest import ROOT

pytestmark = pytest.mark.qgis


def test_class_factory_registers_and_unloads_provider(qgis_app, qgis_iface):
    import rs_seg_qgis
    plugin = rs_seg_qgis.classFactory(qgis_iface)
    plugin.initProcessing()
    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("rs_seg")
    assert provider is not None and provider.name() == "RS Seg"
    plugin.initGui()  # desktop path must not register twice
    assert [p.id() for p in registry.providers()].count("rs_seg") == 1
    plugin.unload()
    assert registry.providerById("rs_seg") is None


def test_provider_loads_without_torch_and_says_what_to_install(qgis_app, monkeypatch):
    from rs_seg_qgis import deps
    from rs_seg_qgis.processing import provider as provider_module
    messages = []
    monkeypatch.setattr(provider_module, "missing_modules", lambda: ["torch"])
    monkeypatch.setattr(provider_module, "environment", lambda: deps.Environment(False, False))
    QgsApplication.messageLog().messageReceived.connect(lambda m, tag, lvl: messages.append(m))
    prov = provider_module.RsSegProvider()
    assert QgsApplication.processingRegistry().addProvider(prov)
    try:
        QgsApplication.processEvents()
        hint = deps.install_hint(["torch"])
        assert "pip install torch==2.13.0" in hint
        assert any("torch==2.13.0" in m for m in messages)
    finally:
        QgsApplication.processingRegistry().removeProvider(prov)
    # inference only (onnxruntime, no torch) is complete: no install warning at load
    messages.clear()
    monkeypatch.setattr(provider_module, "environment", lambda: deps.Environment(False, True))
    prov = provider_module.RsSegProvider()
    assert QgsApplication.processingRegistry().addProvider(prov)
    try:
        QgsApplication.processEvents()
        assert not any("torch==2.13.0" in m for m in messages)
        assert any("Inference only" in m for m in messages)
    finally:
        QgsApplication.processingRegistry().removeProvider(prov)


def test_metadata_is_complete():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "rs_seg_qgis" / "metadata.txt")
    g = cfg["general"]
    for key in ("name", "qgisMinimumVersion", "description", "about", "version", "author",
                "email", "repository", "hasProcessingProvider"):
        assert g.get(key), key
    assert g["qgisMinimumVersion"] == "3.22" and g["hasProcessingProvider"] == "yes"
    assert (ROOT / "metadata.txt").read_text() == (ROOT / "rs_seg_qgis" / "metadata.txt").read_text()


def test_qgis_process_lists_the_plugin_headless(tmp_path):
    env_profile = tmp_path / "profile"
    r = subprocess.run([str(ROOT / "scripts" / "qgis-process"), "plugins"], capture_output=True,
                       text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                            "RS_SEG_QGIS_PROFILE": str(env_profile)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "rs_seg_qgis" in r.stdout
    ini = env_profile / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    assert "rs_seg_qgis=true" in ini.read_text()


NO_TORCH_SCRIPT = """
import sys
sys.path[:0] = [{root!r}, "/usr/share/qgis/python/plugins"]
from qgis.core import QgsApplication, QgsProcessingException
app = QgsApplication([], False)
app.initQgis()
from processing.core.Processing import Processing
Processing.initialize()
import processing
from rs_seg_qgis.processing.provider import RsSegProvider
provider = RsSegProvider()
QgsApplication.processingRegistry().addProvider(provider)
print("ALGORITHMS", " ".join(sorted(a.name() for a in provider.algorithms())))
try:
    processing.run("rs_seg:segment", {{"INPUT": "in.tif", "MODEL": "m.rsmodel",
                                       "OUTPUT": "out.tif"}})
except QgsProcessingException as exc:
    print("ERROR", exc)
"""


def test_without_torch_algorithms_are_listed_and_running_one_says_what_to_install(tmp_path):
    # Debian's own python3 has QGIS but not torch: the real "torch is missing" situation
    r = subprocess.run(["/usr/bin/python3", "-c", NO_TORCH_SCRIPT.format(root=str(ROOT))],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                            "QT_QPA_PLATFORM": "offscreen",
                            "QGIS_CUSTOM_CONFIG_PATH": str(tmp_path / "profile")})
    assert r.returncode == 0, r.stdout + r.stderr
    assert ("ALGORITHMS detect_change download_model evaluate export_onnx pretrain quantize_int8 "
            "refine_model review_places segment "
            "segment_folder "
            "segment_point "
            "train_change train_segmentation vectorize") in r.stdout
    assert "RS Seg needs torch" in r.stdout and "pip install torch==2.13.0" in r.stdout
