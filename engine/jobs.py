"""The job protocol: progress and cancel callables, user-facing errors, atomic outputs.

Every long engine entry point takes ``progress(fraction, message)`` and ``cancelled() -> bool``
(both optional).  On cancel it raises :class:`Cancelled`; user-facing failures are
:class:`EngineError` subclasses whose message names the problem and the fix.  Outputs are written
to a temporary name in the destination folder and renamed only when complete, so a cancel, an
error or Ctrl-C never leaves a half-written file at the output path.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Optional

ProgressFn = Callable[[float, str], None]
CancelledFn = Callable[[], bool]


class EngineError(Exception):
    """A failure the user can fix; the message says what is wrong and what to do."""


class InputError(EngineError):
    """An input file or parameter is missing, unreadable or inconsistent."""


class ModelFileError(EngineError):
    """A model file is corrupt, unsafe, of a newer schema or for another task."""


class DeviceError(EngineError):
    """The requested compute device is not available."""


class OutputError(EngineError):
    """An output cannot be written (folder missing or not writable, disk full)."""


class Cancelled(Exception):
    """The job was cancelled by the user; no output was left behind."""


class Job:
    """Progress and cancel plumbing for one engine call.

    ``check()`` raises :class:`Cancelled` when the caller asked to stop; ``report()`` forwards
    progress clamped to [0, 1].  Both callables are optional.
    """

    def __init__(self, progress: Optional[ProgressFn] = None,
                 cancelled: Optional[CancelledFn] = None) -> None:
        self._progress = progress
        self._cancelled = cancelled

    def check(self) -> None:
        """Raise :class:`Cancelled` if the caller asked to stop."""
        if self._cancelled is not None and self._cancelled():
            raise Cancelled("cancelled by the user")

    def report(self, fraction: float, message: str = "") -> None:
        """Report progress (fraction of the whole job, 0..1) with a short message."""
        if self._progress is not None:
            self._progress(min(1.0, max(0.0, float(fraction))), message)

    def log(self, message: str) -> None:
        """Send a log line through the progress channel without moving the bar."""
        if self._progress is not None:
            self._progress(-1.0, message)


def check_writable_output(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path after checking its folder exists and is writable."""
    out = Path(path)
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"output folder {folder} does not exist; create it or choose another "
                          f"output path")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"output folder {folder} is not writable; choose a folder you can "
                          f"write to")
    if out.is_dir():
        raise OutputError(f"output path {out} is a folder; give a file name")
    return out


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    On any exception (including :class:`Cancelled` and ``KeyboardInterrupt``) the temporary file
    and its GDAL side-cars are removed and ``path`` is left untouched.
    """
    out = check_writable_output(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial",
                                    dir=out.parent if str(out.parent) else ".")
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_current_umask())
    try:
        yield tmp
        os.replace(tmp, out)
        _move_sidecars(tmp, out)
    except BaseException:
        remove_with_sidecars(tmp)
        raise


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_SIDECAR_SUFFIXES = (".aux.xml", ".ovr", ".msk")


def _move_sidecars(tmp: Path, out: Path) -> None:
    for suffix in _SIDECAR_SUFFIXES:
        side = Path(str(tmp) + suffix)
        if side.exists():
            os.replace(side, Path(str(out) + suffix))


def remove_with_sidecars(tmp: Path) -> None:
    """Delete ``tmp`` and its GDAL side-cars (.aux.xml, .ovr, .msk), those that exist."""
    for candidate in (tmp, *(Path(str(tmp) + s) for s in _SIDECAR_SUFFIXES)):
        with contextlib.suppress(FileNotFoundError):
            candidate.unlink()
