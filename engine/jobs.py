"""The job protocol: progress and cancel callables, user-facing errors, atomic outputs.

Every long engine entry point takes ``progress(fraction, message)`` and ``cancelled() -> bool``
(both optional).  On cancel it raises :class:`Cancelled`; user-facing failures are
:class:`EngineError` subclasses whose message names the problem and the fix.  Outputs are written
to a temporary name in the destination folder and renamed only when complete, so a cancel, an
error or Ctrl-C never leaves a half-written file at the output path.  The temporary name holds
the writing process's id, so a later run of the same output recognises the leftovers of a killed
run (its process is gone) and removes them.  :func:`check_outputs` is the one guard every command
and Processing algorithm runs on its output paths before any work; in an entry point marked
:func:`job_outputs` it also locks them (a lock file beside each) until the job ends, so a second
run writing the same path is refused while the first is alive.
"""
from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, Optional, TypeVar, Union

ProgressFn = Callable[[float, str], None]
CancelledFn = Callable[[], bool]
T = TypeVar("T")


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


OptionNames = Optional[Mapping[str, str]]


def option_name(names: OptionNames, keyword: str) -> str:
    """How the front-end that called an entry point names one of its parameters in an error
    sentence: ``names`` maps keyword arguments to what the user sees (a Processing form's
    labels); by default the command-line option (``fill_holes`` → ``--fill-holes``)."""
    return (names or {}).get(keyword) or "--" + keyword.replace("_", "-")


class Cancelled(Exception):
    """The job was cancelled by the user.  ``kept``: what it left on purpose, as a sentence
    (the best model of a training's finished epochs); None: no output was left behind."""

    def __init__(self, message: str = "cancelled by the user", kept: Optional[str] = None) -> None:
        super().__init__(message)
        self.kept = kept


@contextlib.contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Hold a Ctrl-C back until the block ends (in the main thread, where the platform can
    hold signals; elsewhere, as on Windows, nothing to do).

    A KeyboardInterrupt raised inside an extension's import (numpy imported by onnxruntime's
    C++) is printed as a traceback there and turned into an ImportError, so the command went
    on without onnxruntime as if it were not installed; held, it arrives once the import is
    done, in Python code that cancels the command."""
    if not hasattr(signal, "pthread_sigmask") or \
            threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


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


PathLike = Union[str, os.PathLike]


def same_file_key(path: PathLike) -> Path:
    """``path`` made absolute and resolved through symlinks (existing or not): two paths with
    the same key name one file."""
    return Path(os.path.abspath(path)).resolve()


def check_outputs(outputs: Mapping[str, Optional[PathLike]],
                  inputs: Iterable[Optional[PathLike]] = (),
                  folders: Iterable[str] = ()) -> Dict[str, Path]:
    """The one guard on output paths, run before any work: ``outputs`` maps a label (the option
    or parameter, e.g. ``--output``) to a path (None: not written).

    Each output's folder must exist and be writable (``folders``: labels of outputs that are
    folders, created when missing), no run still alive may be writing it, and — resolved through
    symlinks — it must differ from every input and from every other output.  Inside an entry
    point marked :func:`job_outputs` each output is locked from here until the entry point
    returns.  Returns the given outputs as Paths.
    """
    checked = check_distinct(outputs, inputs)
    folder_labels = set(folders)
    for label, out in checked.items():
        if label in folder_labels:
            if out.exists() and not out.is_dir():
                raise OutputError(f"{label} {out} is a file; give a folder")
        else:
            check_writable_output(out)
            _claim(out)
    return checked


def check_distinct(outputs: Mapping[str, Optional[PathLike]],
                   inputs: Iterable[Optional[PathLike]] = ()) -> Dict[str, Path]:
    """The path part of :func:`check_outputs`: resolved through symlinks, no output is an input
    and no two outputs are one file.  Returns the given outputs as Paths."""
    sources = {same_file_key(p): Path(p) for p in inputs if p is not None and str(p)}
    taken: Dict[Path, str] = {}
    checked: Dict[str, Path] = {}
    for label, path in outputs.items():
        if path is None or not str(path):
            continue
        out = Path(path)
        key = same_file_key(out)
        if key in sources:
            raise OutputError(f"{label} would write {out}, which is an input ({sources[key]}): "
                              f"writing it would destroy the input; choose another output path")
        if key in taken:
            raise OutputError(f"{taken[key]} and {label} would both write {out}, one over the "
                              f"other; give each output its own path")
        taken[key] = label
        checked[label] = out
    return checked


# ---- temporary names, stale leftovers and locks ---------------------------------------------

def partial_prefix(out: Path) -> str:
    """The start of this process's temporary names for ``out``: ``.NAME.PID.``."""
    return f".{out.name}.{os.getpid()}."


def _partial_pattern(out: Path) -> "re.Pattern[str]":
    return re.compile(rf"\.{re.escape(out.name)}\.(\d+)\.[^/]*\.partial(\..*)?$")


def process_alive(pid: int) -> bool:
    """True while process ``pid`` runs (on this machine)."""
    if pid == os.getpid():
        return True
    if sys.platform == "win32":  # os.kill would terminate it there
        import ctypes
        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # query limited info
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_partials(path: PathLike) -> List[Path]:
    """Delete the temporary files of ``path`` (and their side-cars) left by runs whose process
    is gone (killed, power cut); returns the removed paths."""
    out = Path(path)
    folder = out.parent if str(out.parent) else Path(".")
    pattern = _partial_pattern(out)
    removed: List[Path] = []
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            match = pattern.match(entry.name)
            if match and not process_alive(int(match.group(1))):
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
                    removed.append(entry)
    return removed


def lock_path(out: Path) -> Path:
    """The lock file guarding ``out`` while a run writes it."""
    return out.with_name(f".{out.name}.lock")


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _locked_by(lock: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f" (process {int(lock.read_text().strip())})"
    return ""


def _busy(out: Path, lock: Path) -> OutputError:
    return OutputError(f"another run{_locked_by(lock)} is writing {out}; wait until it finishes "
                       f"or choose another output path")


def _refuse_if_locked(out: Path) -> None:
    lock = lock_path(out)
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return
    try:
        if not _try_lock(fd):
            raise _busy(out, lock)
    finally:
        os.close(fd)  # closing releases the probe's lock


def _acquire(out: Path) -> int:
    """Open and lock ``out``'s lock file (the descriptor), or refuse when a live run holds it."""
    lock = lock_path(out)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_current_umask())
        if not _try_lock(fd):
            os.close(fd)
            raise _busy(out, lock)
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:  # the holder removed it between our open and lock
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            return fd
        os.close(fd)


def _release(out: Path, fd: int) -> None:
    if sys.platform == "win32":  # an open file cannot be removed there
        os.close(fd)
    with contextlib.suppress(OSError):
        lock_path(out).unlink()  # before closing elsewhere: see the inode check in _acquire
    if sys.platform != "win32":
        os.close(fd)


# Locks held for whole jobs: lock key → (descriptor, the job scope holding it).  Scopes are per
# thread (QGIS runs tasks side by side); the lock files make them exclusive across processes.
_held: Dict[Path, tuple] = {}
_held_guard = threading.Lock()
_scopes = threading.local()


def _scope_stack() -> list:
    if not hasattr(_scopes, "stack"):
        _scopes.stack = []
    return _scopes.stack


def _mine(key: Path) -> Optional[bool]:
    """None: nobody in this process holds ``key``; True: a job of this thread; False: another."""
    with _held_guard:
        holder = _held.get(key)
    if holder is None:
        return None
    return any(holder[1] is scope for scope in _scope_stack())


def _claim(out: Path) -> None:
    """Lock ``out`` for the current job scope (outside one: refuse if a live run holds it)."""
    if int(os.environ.get("RANK", "0") or 0) > 0:  # a torchrun rank: rank 0 holds the outputs
        return
    key = same_file_key(out)
    mine = _mine(key)
    if mine is False:
        raise _busy(out, lock_path(out))
    stack = _scope_stack()
    if mine or not stack:
        if not stack:
            _refuse_if_locked(out)
        return
    fd = _acquire(out)
    with _held_guard:
        _held[key] = (fd, stack[-1])
    stack[-1].append((key, out))


def job_outputs(fn: Callable[..., T]) -> Callable[..., T]:
    """Mark an engine entry point: the outputs its :func:`check_outputs` locks stay locked
    until it returns, so a second run writing one is refused from its start, not only while
    the first one writes."""
    @functools.wraps(fn)
    def run(*args: object, **kwargs: object) -> T:
        stack = _scope_stack()
        scope: list = []
        stack.append(scope)
        try:
            return fn(*args, **kwargs)
        finally:
            stack.pop()
            for key, out in scope:
                with _held_guard:
                    fd = _held.pop(key)[0]
                _release(out, fd)
    return run


@contextlib.contextmanager
def output_lock(path: PathLike) -> Iterator[None]:
    """Hold the lock of ``path`` for the body (kept when this job already holds it), or refuse
    when a live run holds it.

    The lock is an OS file lock, released by the kernel when its process dies, so a killed run
    never blocks the next one; the lock file is removed on exit.
    """
    out = Path(path)
    mine = _mine(same_file_key(out))
    if mine:
        yield
        return
    if mine is False:
        raise _busy(out, lock_path(out))
    fd = _acquire(out)
    try:
        yield
    finally:
        _release(out, fd)


@contextlib.contextmanager
def atomic_output(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The output is locked for the body (a second run writing it is refused) and the leftovers of
    killed runs of it are removed first.  On any exception (including :class:`Cancelled` and
    ``KeyboardInterrupt``) the temporary file and its GDAL side-cars are removed and ``path`` is
    left untouched.
    """
    out = check_writable_output(path)
    with output_lock(out):
        remove_stale_partials(out)
        fd, tmp_name = tempfile.mkstemp(prefix=partial_prefix(out), suffix=".partial",
                                        dir=out.parent if str(out.parent) else ".")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            os.chmod(tmp, 0o666 & ~_current_umask())
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
