"""rs_seg:download_model from a local HTTP server, QGIS's proxy settings, and the form's words
(labelled options, help with the form's labels)."""
from __future__ import annotations

import hashlib
import json

import pytest
from qgis.core import QgsApplication, QgsProcessingContext, QgsSettings

from rs_seg_qgis.network import proxy_url
from tests.http_files import FileServer

pytestmark = pytest.mark.qgis
BODY = b"onnx bytes " * 5000


def run(alg, params, **kwargs):
    import processing
    return processing.run(f"rs_seg:{alg}", params, **kwargs)


def _catalogue(tmp_path, url, sha):
    path = tmp_path / "org.json"
    path.write_text(json.dumps({"catalogue_version": 1, "models": [
        {"name": "org-roofs", "task": "segmentation", "url": url, "file": "org_roofs.onnx",
         "classes": ["other", "roof"], "bands": ["R", "G", "B"], "sha256": sha}]}))
    return path


def test_download_model_from_a_user_catalogue_into_a_folder(provider, tmp_path):
    sha = hashlib.sha256(BODY).hexdigest()
    with FileServer({"/roofs.onnx": BODY}) as server:
        cat = _catalogue(tmp_path, server.url("/roofs.onnx"), sha)
        result = run("download_model", {"CATALOGUE": str(cat), "NAME": "org-roofs",
                                        "FOLDER": str(tmp_path / "models")})
    assert result["OUTPUT"] == str(tmp_path / "models" / "org_roofs.onnx")
    assert (tmp_path / "models" / "org_roofs.onnx").read_bytes() == BODY


def test_a_cancelled_download_says_the_part_is_kept_and_the_next_run_resumes(provider, tmp_path):
    from qgis.core import QgsProcessingException, QgsProcessingFeedback
    body = bytes(range(256)) * 4000  # 1 MB: the 64 kB chunks report progress before the end
    sha = hashlib.sha256(body).hexdigest()
    models = tmp_path / "models"
    with FileServer({"/roofs.onnx": body}) as server:
        cat = _catalogue(tmp_path, server.url("/roofs.onnx"), sha)
        params = {"CATALOGUE": str(cat), "NAME": "org-roofs", "FOLDER": str(models)}
        feedback = QgsProcessingFeedback()
        feedback.progressChanged.connect(lambda p: p > 20 and feedback.cancel())
        with pytest.raises(QgsProcessingException) as info:
            run("download_model", params, feedback=feedback)
        part = models / ".org_roofs.onnx.part"
        assert str(info.value).startswith("cancelled by the user; the ")
        assert str(info.value).endswith(f"downloaded so far are kept in {part}; the next "
                                        f"download of org_roofs.onnx resumes there when the "
                                        f"server allows")
        assert 0 < part.stat().st_size < len(body)
        assert run("download_model", params)["OUTPUT"] == str(models / "org_roofs.onnx")
    assert (models / "org_roofs.onnx").read_bytes() == body


def test_download_model_refuses_a_bad_checksum_and_names_the_model(provider, tmp_path):
    from qgis.core import QgsProcessingException
    with FileServer({"/roofs.onnx": BODY}) as server:
        cat = _catalogue(tmp_path, server.url("/roofs.onnx"), "0" * 64)
        with pytest.raises(QgsProcessingException):
            run("download_model", {"CATALOGUE": str(cat), "NAME": "org-roofs",
                                   "FOLDER": str(tmp_path)})
        with pytest.raises(QgsProcessingException):
            run("download_model", {"CATALOGUE": str(cat), "NAME": "nope",
                                   "FOLDER": str(tmp_path)})
    assert not (tmp_path / "org_roofs.onnx").exists()


def test_the_builtin_catalogue_is_offered_with_titles_and_sizes(provider):
    alg = QgsApplication.processingRegistry().algorithmById("rs_seg:download_model")
    options = alg.parameterDefinition("MODEL").options()
    assert any(o.startswith("Segment Anything ViT-B") and o.endswith("375 MB") for o in options)
    assert "Model name in that catalogue" in alg.shortHelpString()
    assert "<b>Downloaded model</b> <small>(OUTPUT)</small>" in alg.shortHelpString()


def test_proxy_url_follows_qgis_network_settings():
    settings = QgsSettings()
    try:
        settings.setValue("proxy/proxyEnabled", True)
        settings.setValue("proxy/proxyType", "HttpProxy")
        settings.setValue("proxy/proxyHost", "proxy.example.org")
        settings.setValue("proxy/proxyPort", "3128")
        settings.setValue("proxy/proxyUser", "ana")
        settings.setValue("proxy/proxyPassword", "p@ss")
        assert proxy_url() == "http://ana:p%40ss@proxy.example.org:3128"
        settings.setValue("proxy/proxyType", "Socks5Proxy")
        assert proxy_url() is None
        settings.setValue("proxy/proxyEnabled", False)
        assert proxy_url() is None
    finally:
        for key in ("Enabled", "Type", "Host", "Port", "User", "Password"):
            settings.remove(f"proxy/proxy{key}")


def test_labelled_options_accept_the_value_the_index_and_default(provider):
    alg = QgsApplication.processingRegistry().algorithmById("rs_seg:detect_change")
    assert alg.parameterDefinition("DEVICE").options()[1] == "Processor (CPU)"
    context = QgsProcessingContext()
    assert alg.parameterAsEnumString({"DEVICE": "cpu"}, "DEVICE", context) == "cpu"
    assert alg.parameterAsEnumString({"DEVICE": 1}, "DEVICE", context) == "cpu"
    assert alg.parameterAsEnumString({}, "DEVICE", context) == "auto"
    assert alg.parameterAsEnumString({}, "METHOD", context) == "auto"
    train = QgsApplication.processingRegistry().algorithmById("rs_seg:train_segmentation")
    assert train.parameterAsEnumString({}, "NORMALISATION", context) == ""  # unset stays unset
    assert train.parameterAsEnumString({"NORMALISATION": 1}, "NORMALISATION", context) == \
        "percentile"
    help_text = alg.shortHelpString()
    assert "<b>Before (date 1) / After (date 2)</b>" in help_text and "INPUT_T1" in help_text
