"""One install, from resolving to the atomic swap; the same call for the QgsTask and scripts.

``install(choice, options, root, progress, cancelled)`` follows the engine's job protocol:
``progress(fraction, text)`` and ``cancelled() -> bool``.  On any failure or cancel the staging
folder is removed and the live folder stays as it was.
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from . import folder, pip
from .choices import Choice

try:
    from packaging.requirements import Requirement
except ImportError:  # pragma: no cover — a QGIS Python without packaging: pip's copy
    from pip._vendor.packaging.requirements import Requirement

ProgressFn = Callable[[float, str], None]
TAIL_LINES = 6  # pip lines quoted in a failure message


class InstallError(Exception):
    """The install failed; the message says why and what to do.  Nothing live changed."""


class InstallCancelled(Exception):
    """The user cancelled; nothing live changed."""


@dataclass
class InstallResult:
    """What a finished install made live."""

    site: Path
    packages: List[Tuple[str, str]]
    log: List[str] = field(default_factory=list)


def distributions(paths: Sequence[str]) -> Dict[str, Tuple[str, object]]:
    """{canonical name: (version, distribution)} on ``paths``, the first one of each name."""
    found: Dict[str, Tuple[str, object]] = {}
    for dist in importlib.metadata.distributions(path=list(paths)):
        name = dist.metadata["Name"]
        if name and pip.canonical(name) not in found:
            found[pip.canonical(name)] = (dist.version, dist)
    return found


def unmet_requirements(site: Path, host: Sequence[str]) -> List[str]:
    """Requirements of the packages in ``site`` that neither ``site`` nor ``host`` satisfy."""
    here = distributions([str(site)])
    available = {**distributions(host), **here}  # site first on sys.path: it wins
    unmet = []
    for name, (_, dist) in here.items():
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue  # an extra nobody asked for, or another platform
            have = available.get(pip.canonical(req.name))
            if have is None or not req.specifier.contains(have[0], prereleases=True):
                unmet.append(f"{name} needs {text.split(';')[0].strip()}"
                             f" ({'missing' if have is None else 'found ' + have[0]})")
    return unmet


def _tail(lines: List[str]) -> str:
    useful = [line for line in lines if line.strip() and "is ignored" not in line]
    return " | ".join(line.strip() for line in useful[-TAIL_LINES:])


def _import_check(python: str, site: Path, host: Sequence[str], modules: Sequence[str]) -> str:
    """Import ``modules`` in a fresh QGIS Python with ``site`` first; '' or the error text."""
    if not modules:
        return ""
    code = "; ".join(f"import {m}" for m in modules)
    r = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300,
                       env=pip.pip_env([str(site), *host]), **pip.no_window())
    return "" if r.returncode == 0 else (r.stderr.strip().splitlines() or ["failed"])[-1]


def install(choice: Choice, options: pip.PipOptions, root: Path,
            progress: Optional[ProgressFn] = None,
            cancelled: Optional[Callable[[], bool]] = None,
            python: Optional[str] = None) -> InstallResult:
    """Install ``choice`` into a new folder under ``root`` and make it live (atomic swap)."""
    report = progress or (lambda fraction, text: None)
    stop = cancelled or (lambda: False)
    python = python or pip.python()
    if not choice.available:
        raise InstallError(f"{choice.label} cannot be installed here: {choice.reason}")
    problem = pip.check_python(python)
    if problem:
        raise InstallError(problem)
    log: List[str] = []
    host = pip.host_paths(exclude=folder.private_paths(root))
    staging = folder.new_staging(root)
    try:
        packages = _resolve(python, choice, options, staging, host, log, report, stop)
        site = staging / "site"
        site.mkdir()
        if packages:
            _install(python, choice, options, site, packages, host, log, report, stop)
        report(0.92, "checking the installed packages")
        unmet = unmet_requirements(site, host)
        if unmet:
            raise InstallError("the installed packages are incomplete: " + "; ".join(unmet))
        error = _import_check(python, site, host, choice.imports)
        if error:
            raise InstallError(f"the new packages do not import in QGIS's Python: {error}")
        if stop():
            raise InstallCancelled()
        marker = {"choice": choice.key, "label": choice.label,
                  "requirements": list(choice.requirements), "packages": packages,
                  "python": platform.python_version(),
                  "installed": _dt.datetime.now().isoformat(timespec="seconds"),
                  "wheel_folder": options.wheel_folder}
        live = folder.commit(root, _flatten(staging, site), marker)
        report(1.0, f"installed {', '.join(f'{n} {v}' for n, v in packages) or 'nothing new'}")
        return InstallResult(live, packages, log)
    except pip.PipCancelled:
        raise InstallCancelled() from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _flatten(staging: Path, site: Path) -> Path:
    """Move the pip target up into the staging folder itself (drop the report and pins)."""
    for path in staging.iterdir():
        if path != site:
            path.unlink() if path.is_file() else shutil.rmtree(path)
    for path in site.iterdir():
        path.rename(staging / path.name)
    site.rmdir()
    return staging


def _resolve(python: str, choice: Choice, options: pip.PipOptions, staging: Path,
             host: Sequence[str], log: List[str], report: ProgressFn,
             stop: Callable[[], bool]) -> List[Tuple[str, str]]:
    """(name, version) of every package to install: the dry run's list, protected ones out."""
    report(0.0, "resolving " + " ".join(choice.requirements))
    versions = {name: version for name, (version, _) in distributions(host).items()}
    constraints = staging / "qgis-constraints.txt"
    constraints.write_text(pip.constraints_text(versions), encoding="utf-8")
    out = staging / "report.json"
    command = pip.resolve_command(python, choice, options, out, constraints)
    log.append("$ " + " ".join(command))
    code = pip.run(command, pip.pip_env(host), log.append, stop)
    if code != 0 or not out.is_file():
        raise InstallError(f"pip could not resolve {' '.join(choice.requirements)} for QGIS's "
                           f"Python (exit {code}): {_tail(log)}")
    planned = json.loads(out.read_text(encoding="utf-8")).get("install", [])
    packages = [(item["metadata"]["name"], item["metadata"]["version"]) for item in planned]
    protected = [f"{n} {v}" for n, v in packages if pip.canonical(n) in pip.PROTECTED]
    if protected:  # the constraints make pip fail first; this is the second lock
        raise InstallError(f"the install would replace QGIS's own {', '.join(protected)}; "
                           f"nothing was installed")
    report(0.08, f"{len(packages)} package(s) to install")
    return packages


def _install(python: str, choice: Choice, options: pip.PipOptions, site: Path,
             packages: List[Tuple[str, str]], host: Sequence[str], log: List[str],
             report: ProgressFn, stop: Callable[[], bool]) -> None:
    command = pip.install_command(python, choice, options, site, packages)
    log.append("$ " + " ".join(command))
    steps = pip.Progress(len(packages))

    def line(text: str) -> None:
        log.append(text)
        step = steps.feed(text)
        if step is not None:
            report(0.1 + 0.8 * step[0], step[1])

    code = pip.run(command, pip.pip_env(host), line, stop)
    if code != 0:
        raise InstallError(f"pip install failed (exit {code}): {_tail(log)}")
