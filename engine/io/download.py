"""Download one file over HTTP(S): progress, cancel, resume, checksum, proxy; atomic.

The bytes go to a hidden ``.<name>.part`` file beside the target.  A cancelled or broken
download keeps that part file so the next call resumes it with an HTTP ``Range`` request (a
server that ignores the range restarts from zero); the target itself only appears, by a rename,
once every byte arrived and the SHA-256 (when known) matched.  A mismatch deletes the part file.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, Optional

from ..jobs import Cancelled, CancelledFn, EngineError, Job, ProgressFn, check_writable_output

CHUNK = 1 << 16
USER_AGENT = "rs-seg-engine"


class DownloadError(EngineError):
    """A download failed (network, server, checksum); the message says what to do."""


def part_path(target: Path) -> Path:
    """The hidden file a download of ``target`` writes to until it is complete."""
    return target.parent / f".{target.name}.part"


def opener(proxy: Optional[str] = None) -> urllib.request.OpenerDirector:
    """A URL opener through ``proxy`` (``http://user:pw@host:port``); without one, the
    environment's proxy variables apply as usual."""
    handlers = [urllib.request.ProxyHandler({"http": proxy, "https": proxy})] if proxy else []
    return urllib.request.build_opener(*handlers)


def fetch_text(url: str, proxy: Optional[str] = None, timeout: float = 30.0) -> str:
    """The body of a small text resource (a catalogue) at ``url``."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with opener(proxy).open(request, timeout=timeout) as response:
            return response.read().decode("utf-8")
    except (urllib.error.URLError, OSError, UnicodeDecodeError) as exc:
        raise DownloadError(f"cannot read {url}: {_reason(exc)}; check the address, the "
                            f"network and the proxy settings") from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc)


def _amount(size: int) -> str:
    """'12.3 MiB' or '3 kB': a byte count as a person reads it."""
    return f"{size / 2 ** 20:.1f} MiB" if size >= 2 ** 20 else f"{size / 1000:.0f} kB"


def file_digest(path: Path) -> "hashlib._Hash":
    """The running SHA-256 of the bytes in ``path`` (to continue or compare)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest


def download(url: str, target: str | os.PathLike, sha256: Optional[str] = None,
             size: Optional[int] = None, proxy: Optional[str] = None, timeout: float = 30.0,
             progress: Optional[ProgressFn] = None,
             cancelled: Optional[CancelledFn] = None) -> Path:
    """Download ``url`` to ``target`` (resuming a part file left by an earlier try).

    ``sha256`` (hex) is checked when given; ``size`` (bytes) is the expected length when the
    server does not send one.  Raises :class:`DownloadError`, or ``Cancelled`` (the part file
    stays for a later resume).
    """
    out = check_writable_output(target)
    job = Job(progress, cancelled)
    part = part_path(out)
    have = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = opener(proxy).open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not have:  # 416: the part file already holds every byte
            raise DownloadError(f"cannot download {url}: {_reason(exc)}") from exc
        response = None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"cannot download {url}: {_reason(exc)}; check the network and "
                            f"the proxy settings, then try again (it resumes)") from exc
    digest = file_digest(part) if have else hashlib.sha256()
    if response is not None:
        with response:
            resumed = response.status == 206
            if not resumed:
                have, digest = 0, hashlib.sha256()
            length = response.headers.get("Content-Length")
            total = have + int(length) if length and length.isdigit() else size
            with _saying_the_part_is_kept(out), open(part, "ab" if resumed else "wb") as f:
                while True:
                    job.check()
                    try:
                        block = response.read(CHUNK)
                    except (OSError, http.client.HTTPException) as exc:
                        raise DownloadError(f"the download of {url} broke off after "
                                            f"{have} bytes ({exc}); try again: it resumes "
                                            f"where it stopped") from exc
                    if not block:
                        break
                    f.write(block)
                    digest.update(block)
                    have += len(block)
                    if total:
                        job.report(have / total, f"{_amount(have)} of {_amount(total)}")
            if total and have < total:
                raise DownloadError(f"the download of {url} stopped at {have} of {total} bytes; "
                                    f"try again: it resumes where it stopped")
    if sha256 and digest.hexdigest().lower() != sha256.lower():
        part.unlink(missing_ok=True)
        raise DownloadError(f"{out.name} does not match its published SHA-256 (got "
                            f"{digest.hexdigest()[:12]}…, expected {sha256[:12]}…): the file was "
                            f"damaged or replaced on the server; it was deleted, try again or "
                            f"tell the catalogue's maintainer")
    os.replace(part, out)
    job.report(1.0, f"downloaded {out.name}")
    return out


@contextlib.contextmanager
def _saying_the_part_is_kept(out: Path) -> Iterator[None]:
    """A cancel (or Ctrl-C) while bytes arrive becomes a :class:`Cancelled` that says the part
    file stays and the next download of ``out`` resumes it."""
    try:
        yield
    except (Cancelled, KeyboardInterrupt):
        part = part_path(out)
        size = part.stat().st_size if part.is_file() else 0
        if not size:
            raise
        raise Cancelled(kept=f"the {_amount(size)} downloaded so far are kept in "
                             f"{part}; the next download of {out.name} resumes there when the "
                             f"server allows") from None
