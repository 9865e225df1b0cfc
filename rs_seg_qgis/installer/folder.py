"""The plugin-private packages folder: layout, health check, atomic swap, sys.path.

Layout under ``<QGIS profile>/rs_seg_packages/<python tag>/``::

    current                   one line: the name of the live folder (replaced atomically)
    site-<stamp>/             a complete install (pip --target), with rs_seg_install.json
    staging-<stamp>/          an install in progress (never on sys.path)

An install is written to a staging folder, checked, renamed to ``site-<stamp>`` and only then
made live by replacing ``current``; so a failed, cancelled or killed install leaves the previous
folder working.  A live folder without its marker, or with files its RECORD lists missing,
is "broken" (half-written or damaged) and is not put on sys.path.
"""
from __future__ import annotations

import csv
import datetime as _dt
import importlib
import json
import os
import shutil
import sys
import sysconfig
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

CURRENT = "current"
MARKER = "rs_seg_install.json"
FOLDER_NAME = "rs_seg_packages"
STALE_STAGING_S = 24 * 3600  # an older staging folder belongs to no running install


def python_tag() -> str:
    """``py3.11-linux-x86_64``: compiled wheels only fit the Python and platform they came for."""
    return (f"py{sys.version_info.major}.{sys.version_info.minor}-"
            f"{sysconfig.get_platform().replace('_', '-')}")


def default_root(profile_dir: str | Path) -> Path:
    """The private folder of a QGIS profile (``QgsApplication.qgisSettingsDirPath()``)."""
    return Path(profile_dir) / FOLDER_NAME / python_tag()


@dataclass
class Health:
    """State of the private folder: ``none`` (nothing installed), ``ok`` or ``broken``."""

    state: str
    site: Optional[Path] = None
    problem: str = ""
    marker: Dict[str, Any] = field(default_factory=dict)

    @property
    def choice(self) -> str:
        """The choice key the live folder was installed with (``cpu`` when unknown)."""
        return str(self.marker.get("choice") or "cpu")


def live_site(root: Path) -> Optional[Path]:
    """The folder ``current`` names (None when nothing was ever made live)."""
    try:
        name = (root / CURRENT).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return root / name if name else None


def missing_files(site: Path, limit: int = 5) -> List[str]:
    """Up to ``limit`` files that the RECORDs of ``site`` list but that are not there."""
    missing: List[str] = []
    for record in sorted(site.glob("*.dist-info/RECORD")):
        with open(record, newline="", encoding="utf-8") as f:
            for row in csv.reader(f):
                name = row[0] if row else ""
                # scripts may sit outside the target; byte code is rebuilt on import
                if not name or name.startswith("..") or name.endswith(".pyc"):
                    continue
                if not (site / name).exists():
                    missing.append(name)
                    if len(missing) >= limit:
                        return missing
    return missing


def check(root: Path) -> Health:
    """Is the live folder complete?  Reads every RECORD (about 0.1 s for torch)."""
    site = live_site(root)
    if site is None:
        return Health("none")
    if not site.is_dir():
        return Health("broken", site, f"{site} is gone (the folder named in {root / CURRENT})")
    try:
        marker = json.loads((site / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Health("broken", site, f"{site} is half-written: its {MARKER} is missing")
    lost = missing_files(site)
    if lost:
        return Health("broken", site, f"{site} is damaged: {', '.join(lost)} "
                                      f"{'is' if len(lost) == 1 else 'are'} missing", marker)
    return Health("ok", site, "", marker)


def new_staging(root: Path) -> Path:
    """A fresh, empty staging folder next to the live one (same disk: rename is atomic)."""
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f"staging-{_stamp()}"
    staging.mkdir()
    return staging


def _stamp() -> str:
    return f"{_dt.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def commit(root: Path, staging: Path, marker: Dict[str, Any]) -> Path:
    """Make ``staging`` the live folder: marker, rename, then replace ``current`` atomically.

    The old live folder is removed afterwards when possible (Windows keeps loaded DLLs locked;
    :func:`cleanup` retries at the next start).
    """
    (staging / MARKER).write_text(json.dumps(marker, indent=1), encoding="utf-8")
    site = root / f"site-{_stamp()}"
    staging.rename(site)
    old = live_site(root)
    pointer = root / f"{CURRENT}.{uuid.uuid4().hex[:6]}.tmp"
    pointer.write_text(site.name + "\n", encoding="utf-8")
    os.replace(pointer, root / CURRENT)
    if old is not None and old != site and not _in_use(old):
        shutil.rmtree(old, ignore_errors=True)
    return site


def _in_use(site: Path) -> bool:
    """True when modules of this process were imported from ``site`` (keep it for them)."""
    prefix = str(site) + os.sep
    return any(str(getattr(m, "__file__", "") or "").startswith(prefix)
               for m in list(sys.modules.values()))


def cleanup(root: Path) -> None:
    """Remove folders no one uses: sites that are not live, staging older than a day."""
    if not root.is_dir():
        return
    live = live_site(root)
    for path in root.iterdir():
        if path.name.startswith("site-") and path != live and not _in_use(path):
            shutil.rmtree(path, ignore_errors=True)
        elif path.name.startswith("staging-") and \
                time.time() - path.stat().st_mtime > STALE_STAGING_S:
            shutil.rmtree(path, ignore_errors=True)
        elif path.name.startswith(f"{CURRENT}.") and path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)


def private_paths(root: Path) -> List[str]:
    """The sys.path entries that point into ``root`` (any install of this folder)."""
    prefix = str(root) + os.sep
    return [p for p in sys.path if str(p).startswith(prefix)]


def activate(root: Path) -> Health:
    """Put the live folder first on sys.path (if it is healthy) instead of any older one.

    First, because an older torch elsewhere on the path must not win over the pinned one.
    Returns the folder's health; a broken folder is left off sys.path.
    """
    health = check(root)
    for path in private_paths(root):
        sys.path.remove(path)
    if health.state == "ok" and health.site is not None:
        sys.path.insert(0, str(health.site))
    importlib.invalidate_caches()
    return health
