"""Model catalogues: JSON lists of downloadable models, and getting one into the models folder.

A catalogue (``model_catalogue.json`` beside this module is the built-in one; a user's or an
organisation's lives in a file or at a URL, same format)::

    {"catalogue_version": 1, "title": "…",
     "models": [{"name": "sam-vit-b", "title": "…", "task": "segmentation|change|click",
                 "classes": ["…"], "bands": ["R", "G", "B"], "gsd_m": 0.4 | null,
                 "size_bytes": 375042383 | null, "licence": "…", "url": "https://…",
                 "source": "https://… (the page that publishes it)",
                 "sha256": "hex" | null, "checksum_note": "why there is none",
                 "file": "name in the models folder", "description": "…"}]}

``task`` ``click`` marks Segment Anything checkpoints (click to segment objects); the others
are models for the model pickers.  An entry without ``sha256`` must say why in
``checksum_note``: nothing is presented as verified that is not.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..io.download import download, fetch_text, file_digest
from ..jobs import CancelledFn, InputError, ProgressFn

BUILTIN = Path(__file__).with_name("model_catalogue.json")
TASKS = ("segmentation", "change", "click")
SUPPORTED_VERSION = 1
_HEX = set("0123456789abcdef")


class CatalogueError(InputError):
    """A catalogue that cannot be read or has an invalid entry."""


@dataclass(frozen=True)
class CatalogueEntry:
    """One downloadable model."""

    name: str
    title: str
    task: str
    url: str
    file: str
    classes: List[str] = field(default_factory=list)
    bands: List[str] = field(default_factory=list)
    gsd_m: Optional[float] = None
    size_bytes: Optional[int] = None
    licence: str = ""
    source: str = ""
    sha256: Optional[str] = None
    checksum_note: str = ""
    description: str = ""

    @property
    def size_text(self) -> str:
        """'375 MB', or 'unknown'."""
        if not self.size_bytes:
            return "unknown"
        mb = self.size_bytes / 1e6
        if mb < 1:
            return f"{self.size_bytes / 1e3:.0f} kB"
        return f"{mb / 1000:.1f} GB" if mb >= 1000 else f"{mb:.0f} MB"

    @property
    def checksum_text(self) -> str:
        """'SHA-256 ec2df627…' or the reason there is no checksum."""
        return f"SHA-256 {self.sha256[:12]}…" if self.sha256 else \
            (self.checksum_note or "no checksum published: the file cannot be verified")


def _entry(raw: Dict[str, Any], origin: str) -> CatalogueEntry:
    name = str(raw.get("name") or "").strip()
    where = f"{origin}, model {name or '(no name)'}"
    for key in ("name", "task", "url", "file"):
        if not raw.get(key):
            raise CatalogueError(f"{where}: '{key}' is missing; every entry needs name, task, "
                                 f"url and file")
    if raw["task"] not in TASKS:
        raise CatalogueError(f"{where}: task '{raw['task']}' is not one of {', '.join(TASKS)}")
    if not str(raw["url"]).startswith(("http://", "https://", "file://")):
        raise CatalogueError(f"{where}: url must start with https:// (or http://, file://)")
    file = str(raw["file"])
    if Path(file).name != file or file.startswith("."):
        raise CatalogueError(f"{where}: file '{file}' must be a plain file name (no folders)")
    sha = raw.get("sha256")
    if sha is not None and (len(str(sha)) != 64 or not set(str(sha).lower()) <= _HEX):
        raise CatalogueError(f"{where}: sha256 must be 64 hex digits, or null with a "
                             f"checksum_note saying why there is none")
    try:
        gsd = float(raw["gsd_m"]) if raw.get("gsd_m") is not None else None
        size = int(raw["size_bytes"]) if raw.get("size_bytes") is not None else None
    except (TypeError, ValueError) as exc:
        raise CatalogueError(f"{where}: gsd_m and size_bytes must be numbers or null") from exc
    return CatalogueEntry(name=name, title=str(raw.get("title") or name), task=raw["task"],
                          url=str(raw["url"]), file=file,
                          classes=[str(c) for c in raw.get("classes") or []],
                          bands=[str(b) for b in raw.get("bands") or []], gsd_m=gsd,
                          size_bytes=size, licence=str(raw.get("licence") or "not stated"),
                          source=str(raw.get("source") or ""),
                          sha256=str(sha).lower() if sha else None,
                          checksum_note=str(raw.get("checksum_note") or ""),
                          description=str(raw.get("description") or ""))


def parse_catalogue(text: str, origin: str = "catalogue") -> List[CatalogueEntry]:
    """The entries of catalogue JSON ``text`` (``origin`` names it in error messages)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogueError(f"{origin} is not valid JSON ({exc}); a catalogue is a JSON "
                             f"object with a 'models' list") from exc
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise CatalogueError(f"{origin} has no 'models' list; see docs/models.md, "
                             f"'Model catalogues'")
    version = data.get("catalogue_version", 1)
    if not isinstance(version, int) or version > SUPPORTED_VERSION:
        raise CatalogueError(f"{origin} is catalogue version {version}; this RS Seg reads "
                             f"version {SUPPORTED_VERSION}: update RS Seg")
    entries = [_entry(raw if isinstance(raw, dict) else {}, origin) for raw in data["models"]]
    names = [e.name for e in entries]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise CatalogueError(f"{origin} lists {', '.join(duplicated)} twice; names must be "
                             f"unique")
    return entries


def load_catalogue(source: str | os.PathLike | None = None,
                   proxy: Optional[str] = None) -> List[CatalogueEntry]:
    """The entries of the catalogue at ``source`` (a file or an http(s) URL; None: built-in)."""
    text_source = str(source) if source else str(BUILTIN)
    if text_source.startswith(("http://", "https://")):
        return parse_catalogue(fetch_text(text_source, proxy), text_source)
    path = Path(text_source).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogueError(f"cannot read the catalogue {path}: {exc.strerror or exc}; give "
                             f"an existing JSON file or an https:// address") from exc
    return parse_catalogue(text, str(path))


def load_catalogues(sources: Sequence[str] = (),
                    proxy: Optional[str] = None) -> List[CatalogueEntry]:
    """The built-in catalogue followed by ``sources``; a later entry of the same name wins."""
    merged: Dict[str, CatalogueEntry] = {}
    for source in [None, *[s for s in sources if s]]:
        for entry in load_catalogue(source, proxy):
            merged[entry.name] = entry
    return list(merged.values())


def find_entry(entries: Sequence[CatalogueEntry], name: str) -> CatalogueEntry:
    """The entry called ``name`` (the error lists the names there are)."""
    for entry in entries:
        if entry.name == name:
            return entry
    raise CatalogueError(f"no model '{name}' in the catalogue; known: "
                         f"{', '.join(e.name for e in entries)} (python -m engine models list)")


def get_model(entry: CatalogueEntry, folder: str | os.PathLike, proxy: Optional[str] = None,
              progress: Optional[ProgressFn] = None,
              cancelled: Optional[CancelledFn] = None) -> Path:
    """Download ``entry`` into ``folder`` (resuming, checksum-checked); returns the file.

    A file of that name already in the folder is kept when it matches the checksum (or when
    the entry has none) and nothing is downloaded.
    """
    target = Path(folder) / entry.file
    Path(folder).mkdir(parents=True, exist_ok=True)
    if target.is_file() and (entry.sha256 is None or file_digest(target).hexdigest() == entry.sha256):
        if progress is not None:
            progress(1.0, f"{entry.file} is already in the models folder")
        return target
    return download(entry.url, target, sha256=entry.sha256, size=entry.size_bytes, proxy=proxy,
                    progress=progress, cancelled=cancelled)

