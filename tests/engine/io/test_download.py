"""Downloads from a local HTTP server: progress, resume by Range, restart, checksum, cancel."""
from __future__ import annotations

import hashlib
import os

import pytest

from engine.io.download import DownloadError, download, fetch_text, part_path
from engine.jobs import Cancelled
from tests.http_files import FileServer

BODY = os.urandom(300_000)
SHA = hashlib.sha256(BODY).hexdigest()


def test_download_reports_progress_and_renames_when_complete(tmp_path):
    seen = []
    with FileServer({"/m.bin": BODY}) as server:
        out = download(server.url("/m.bin"), tmp_path / "m.bin", sha256=SHA,
                       progress=lambda f, m: seen.append(f))
    assert out.read_bytes() == BODY
    assert not part_path(out).exists()
    assert seen[-1] == 1.0 and 0 < seen[0] < 1 and seen == sorted(seen)


def test_a_broken_download_resumes_with_a_range_request(tmp_path):
    target = tmp_path / "m.bin"
    with FileServer({"/m.bin": BODY}) as server:
        server.break_after = 100_000
        with pytest.raises(DownloadError, match="resumes"):
            download(server.url("/m.bin"), target, sha256=SHA)
        assert not target.exists() and part_path(target).stat().st_size == 100_000
        download(server.url("/m.bin"), target, sha256=SHA)
    assert target.read_bytes() == BODY
    assert server.requests[-1]["Range"] == "bytes=100000-"


def test_a_server_without_ranges_restarts_from_zero(tmp_path):
    target = tmp_path / "m.bin"
    part_path(target).write_bytes(b"stale bytes of another try")
    with FileServer({"/m.bin": BODY}) as server:
        server.ranges = False
        download(server.url("/m.bin"), target, sha256=SHA)
    assert target.read_bytes() == BODY


def test_a_complete_part_file_is_checked_and_renamed(tmp_path):
    target = tmp_path / "m.bin"
    part_path(target).write_bytes(BODY)
    with FileServer({"/m.bin": BODY}) as server:
        download(server.url("/m.bin"), target, sha256=SHA)  # the server answers 416
    assert target.read_bytes() == BODY


def test_a_checksum_mismatch_leaves_nothing(tmp_path):
    target = tmp_path / "m.bin"
    with FileServer({"/m.bin": BODY[:-1] + b"x"}) as server:
        with pytest.raises(DownloadError, match="SHA-256"):
            download(server.url("/m.bin"), target, sha256=SHA)
    assert list(tmp_path.iterdir()) == []


def test_cancel_keeps_only_the_hidden_part_file(tmp_path):
    target = tmp_path / "m.bin"
    with FileServer({"/m.bin": BODY}) as server:
        calls = []
        with pytest.raises(Cancelled) as info:
            download(server.url("/m.bin"), target, cancelled=lambda: calls.append(1) or
                     len(calls) > 2)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == [part_path(target).name]
    kept = part_path(target).stat().st_size
    assert kept > 0 and info.value.kept == (
        f"the {kept / 1000:.0f} kB downloaded so far are kept in {part_path(target)}; the next "
        f"download of m.bin resumes there when the server allows")


def test_a_cancel_before_any_byte_keeps_nothing_worth_a_word(tmp_path):
    target = tmp_path / "m.bin"
    with FileServer({"/m.bin": BODY}) as server:
        with pytest.raises(Cancelled) as info:
            download(server.url("/m.bin"), target, cancelled=lambda: True)
    assert info.value.kept is None and not target.exists()


def test_errors_name_the_address_and_what_to_do(tmp_path):
    with FileServer({}) as server:
        with pytest.raises(DownloadError, match="404"):
            download(server.url("/missing.bin"), tmp_path / "x.bin")
        with pytest.raises(DownloadError, match="cannot read"):
            fetch_text(server.url("/missing.json"))


def test_the_proxy_carries_the_request(tmp_path):
    """The file server doubles as an HTTP proxy: the request names the full URL."""
    with FileServer({"http://example.invalid/m.bin": BODY}) as proxy:
        out = download("http://example.invalid/m.bin", tmp_path / "m.bin", sha256=SHA,
                       proxy=proxy.url(""))
    assert out.read_bytes() == BODY
