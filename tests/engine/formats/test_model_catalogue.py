"""Model catalogues: the built-in file, the format's checks, user catalogues, get_model, CLI."""
from __future__ import annotations

import hashlib
import json

import pytest

from engine.__main__ import main
from engine.formats.model_catalogue import (BUILTIN, CatalogueError, find_entry, get_model,
                                            load_catalogue, load_catalogues, parse_catalogue)
from tests.http_files import FileServer

BODY = b"model bytes " * 1000


def _catalogue(url: str, sha256=None, name: str = "tiny") -> dict:
    entry = {"name": name, "task": "segmentation", "url": url, "file": f"{name}.onnx",
             "classes": ["background", "building"], "bands": ["R", "G", "B"], "gsd_m": 0.5,
             "size_bytes": len(BODY), "licence": "CC-BY-4.0", "sha256": sha256}
    return {"catalogue_version": 1, "models": [entry]}


def test_the_builtin_catalogue_is_valid_and_honest_about_checksums():
    entries = load_catalogue()
    names = {e.name for e in entries}
    assert {"sam-vit-b", "sam-vit-l", "sam-vit-h", "deepness-land-cover"} <= names
    for entry in entries:
        assert entry.url.startswith("https://")
        assert entry.sha256 or "checksum" in entry.checksum_note  # unverified says so
    sam = find_entry(entries, "sam-vit-b")
    assert sam.task == "click" and sam.sha256.startswith("ec2df627") and sam.size_text == "375 MB"


@pytest.mark.parametrize("change, message", [
    ({"task": "detection"}, "task"), ({"url": "ftp://x"}, "url"), ({"file": "../m.onnx"}, "file"),
    ({"sha256": "abc"}, "sha256"), ({"gsd_m": "fine"}, "gsd_m"), ({"url": ""}, "url")])
def test_invalid_entries_are_refused_with_the_reason(change, message):
    data = _catalogue("https://example.org/m.onnx")
    data["models"][0].update(change)
    with pytest.raises(CatalogueError, match=message):
        parse_catalogue(json.dumps(data), "my.json")


def test_a_newer_catalogue_version_and_broken_json_are_refused():
    with pytest.raises(CatalogueError, match="version 2"):
        parse_catalogue(json.dumps({"catalogue_version": 2, "models": []}))
    with pytest.raises(CatalogueError, match="not valid JSON"):
        parse_catalogue("{")


def test_user_catalogues_from_a_file_and_a_url_follow_the_builtin_one(tmp_path):
    path = tmp_path / "org.json"
    path.write_text(json.dumps(_catalogue("https://example.org/m.onnx")))
    with FileServer({"/cat.json": json.dumps(_catalogue("https://x.org/b.onnx",
                                                        name="other")).encode()}) as server:
        entries = load_catalogues([str(path), server.url("/cat.json")])
    names = [e.name for e in entries]
    assert names[:len(load_catalogue())] == [e.name for e in load_catalogue()]
    assert names[-2:] == ["tiny", "other"]
    with pytest.raises(CatalogueError, match="known: .*tiny"):
        find_entry(entries, "nope")


def test_get_model_downloads_verifies_and_keeps_a_good_copy(tmp_path):
    sha = hashlib.sha256(BODY).hexdigest()
    with FileServer({"/m.onnx": BODY}) as server:
        entry = parse_catalogue(json.dumps(_catalogue(server.url("/m.onnx"), sha)))[0]
        path = get_model(entry, tmp_path / "models")
        assert path.read_bytes() == BODY and path.name == "tiny.onnx"
        assert get_model(entry, tmp_path / "models") == path
    assert len(server.requests) == 1  # the second call found the verified file


def test_cli_models_list_and_get(tmp_path, capsys):
    sha = hashlib.sha256(BODY).hexdigest()
    with FileServer({"/m.onnx": BODY}) as server:
        cat = tmp_path / "cat.json"
        cat.write_text(json.dumps(_catalogue(server.url("/m.onnx"), sha)))
        assert main(["models", "list", "--catalogue", str(cat)]) == 0
        listing = capsys.readouterr().out
        assert "sam-vit-b" in listing and "tiny" in listing and "CC-BY-4.0" in listing
        assert main(["models", "get", "tiny", "--catalogue", str(cat), "--folder",
                     str(tmp_path / "models")]) == 0
    assert "checksum verified" in capsys.readouterr().out
    assert (tmp_path / "models" / "tiny.onnx").read_bytes() == BODY
    assert main(["models", "get", "nope"]) == 2
    assert "known:" in capsys.readouterr().err
    assert main(["models", "get"]) == 2


def test_builtin_catalogue_ships_beside_the_module():
    assert BUILTIN.name == "model_catalogue.json" and BUILTIN.is_file()
