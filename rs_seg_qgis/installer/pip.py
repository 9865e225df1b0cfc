"""Running pip for the installer: which python, the two commands, progress, cancel.

Which python: inside QGIS ``sys.executable`` is often QGIS itself (``qgis.bin``,
``qgis_process.bin``, ``qgis-bin.exe``), so :func:`deps.python_command` finds the interpreter of
the same installation: ``<prefix>/bin/python3.X`` on Linux (Debian: /usr/bin/python3.11) and
macOS, ``python.exe`` in ``<prefix>`` on Windows (OSGeo4W: ``apps/Python3X/python.exe``, the
one beside QGIS).  :func:`check_python` confirms it is the same Python version and has pip.

Two pip runs: ``--dry-run --report`` resolves the requirements against QGIS's own packages
(``PYTHONPATH`` = QGIS's sys.path), with a constraints file pinning what QGIS ships (numpy,
GDAL, rasterio, shapely…) so nothing may replace them; then only what the report lists is
installed with ``--target <staging> --no-deps``, so numpy & co are never installed.
"""
from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .. import deps
from .choices import Choice

MIN_PIP = (22, 2)  # --dry-run --report
# Packages QGIS ships and everything else links against: never installed or replaced.
PROTECTED = ("numpy", "gdal", "rasterio", "shapely", "pyproj", "scipy", "pandas", "matplotlib",
             "pyqt5", "pyqt5-sip", "sip", "qgis")
_COLLECTING = re.compile(r"^(Collecting|Processing|Obtaining)\s+(\S+)")
_DOWNLOADING = re.compile(r"^\s*Downloading\s+(\S+)\s*\(([^)]+)\)")


class PipCancelled(Exception):
    """The user cancelled; pip was stopped."""


@dataclass(frozen=True)
class PipOptions:
    """The dialog's network fields: a proxy and, for offline sites, a folder of wheels."""

    wheel_folder: str = ""
    proxy: str = ""


def canonical(name: str) -> str:
    """PEP 503 name: ``Typing_Extensions`` → ``typing-extensions``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def check_python(python: str) -> Optional[str]:
    """A sentence when ``python`` cannot install for this QGIS (other version, no pip)."""
    probe = ("import sys; import pip; "
             "print('%d.%d.%d' % sys.version_info[:3], pip.__version__)")
    try:
        out = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60,
                             env=pip_env([]), **no_window()).stdout.split()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot run QGIS's Python {python} ({exc})"
    # the full version: another interpreter of the same minor release (pyenv, a second
    # install) would install for its own Python
    here = "%d.%d.%d" % sys.version_info[:3]
    if not out:
        return (f"QGIS's Python {python} has no pip: install it (Debian/Ubuntu: sudo apt "
                f"install python3-pip; Windows: OSGeo4W setup, package python3-pip)")
    if out[0] != here:
        return f"{python} is Python {out[0]} but QGIS runs Python {here}"
    version = tuple(int(x) for x in re.findall(r"\d+", out[1])[:2])
    if version < MIN_PIP:
        return (f"pip {out[1]} of {python} is too old (RS Seg needs pip 22.2 or newer): "
                f"{python} -m pip install --user --upgrade pip")
    return None


def common_args(choice: Choice, options: PipOptions) -> List[str]:
    """Arguments both pip runs share: wheels only, the index or wheel folder, the proxy."""
    args = ["--disable-pip-version-check", "--no-input", "--only-binary=:all:",
            "--root-user-action=ignore"]
    if options.wheel_folder:
        args += ["--no-index", "--find-links", options.wheel_folder]
    elif choice.extra_index_url:
        args += ["--extra-index-url", choice.extra_index_url]
    if options.proxy:
        args += ["--proxy", options.proxy]
    return args


def resolve_command(python: str, choice: Choice, options: PipOptions, report: Path,
                    constraints: Path) -> List[str]:
    """pip's dry run: which packages the choice needs that QGIS's Python does not have."""
    return [python, "-m", "pip", "install", "--dry-run", "--report", str(report),
            "-c", str(constraints), *common_args(choice, options), *choice.requirements]


def install_command(python: str, choice: Choice, options: PipOptions, target: Path,
                    packages: Sequence[Tuple[str, str]]) -> List[str]:
    """pip install of exactly ``packages`` (name, version) into ``target``, no resolution."""
    return [python, "-m", "pip", "install", "--target", str(target), "--no-deps",
            "--no-warn-script-location", *common_args(choice, options),
            *[f"{name}=={version}" for name, version in packages]]


def constraints_text(versions: Dict[str, Optional[str]]) -> str:
    """Pins for the protected packages: QGIS's version, or ``<0`` (never) when it has none."""
    lines = []
    for name in PROTECTED:
        version = versions.get(name)
        lines.append(f"{name}=={version}" if version else f"{name}<0")
    return "\n".join(lines) + "\n"


def host_paths(exclude: Iterable[str] = ()) -> List[str]:
    """QGIS's sys.path entries that hold installed distributions (minus ``exclude``).

    Given to pip as PYTHONPATH, so it sees what this QGIS really imports, including packages
    from the user site or added by the QGIS start-up.
    """
    skip = {str(p) for p in exclude}
    paths = []
    for entry in sys.path:
        if not entry or entry in skip or entry in paths or not os.path.isdir(entry):
            continue
        try:
            names = os.listdir(entry)
        except OSError:
            continue
        if any(n.endswith((".dist-info", ".egg-info")) for n in names):
            paths.append(entry)
    return paths


def pip_env(paths: Sequence[str]) -> Dict[str, str]:
    """The environment pip runs in: this one, with PYTHONPATH set to ``paths`` only."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def no_window() -> Dict[str, int]:
    """Popen keywords that keep a console window from popping up over QGIS (Windows)."""
    return {"creationflags": 0x08000000} if sys.platform == "win32" else {}


class Progress:
    """Turns pip install lines into (fraction of this pip run, text): the packages share 0–0.9
    one step each, unpacking is 0.9."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.done = 0

    def feed(self, line: str) -> Optional[Tuple[float, str]]:
        match = _COLLECTING.match(line)
        if match:
            self.done = min(self.done + 1, self.total)
            name = Path(match.group(2)).name
            return (self.done - 1) / self.total * 0.9, f"{self.done}/{self.total} {name}"
        match = _DOWNLOADING.match(line)
        if match:
            return (self.done - 1) / self.total * 0.9, \
                f"{self.done}/{self.total} downloading {Path(match.group(1)).name} " \
                f"({match.group(2)})"
        if line.startswith("Installing collected packages"):
            return 0.9, "unpacking into the RS Seg folder"
        return None


def run(command: Sequence[str], env: Dict[str, str], on_line: Callable[[str], None],
        cancelled: Callable[[], bool], poll_s: float = 0.2) -> int:
    """Run pip, handing each output line to ``on_line``; stop it when ``cancelled()``.

    Lines are read on a thread so a silent pip (a long download) is still cancellable.
    Returns pip's exit status; raises :class:`PipCancelled` after stopping it.
    """
    proc = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, text=True, encoding="utf-8",
                            errors="replace", **no_window())
    lines: "queue.Queue[Optional[str]]" = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\r\n"))
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while True:
            if cancelled():
                raise PipCancelled()
            try:
                line = lines.get(timeout=poll_s)
            except queue.Empty:
                continue
            if line is None:
                break
            on_line(line)
        return proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(timeout=5)
        if proc.stdout is not None:  # an open pipe is a ResourceWarning in QGIS's log
            proc.stdout.close()


def python() -> str:
    """The interpreter that runs pip for this QGIS (see the module docstring)."""
    return deps.python_command()
