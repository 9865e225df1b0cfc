"""Tiny wheels written by hand, for offline installer tests (pip installs them with
``--no-index --find-links``)."""
from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path
from typing import Dict, Optional, Sequence


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(folder: Path, name: str, version: str, requires: Sequence[str] = (),
               files: Optional[Dict[str, str]] = None) -> Path:
    """``<folder>/<name>-<version>-py3-none-any.whl``: package ``name`` whose ``__init__``
    sets ``__version__``, plus ``files`` (path → text), requiring ``requires``."""
    folder.mkdir(parents=True, exist_ok=True)
    dist_info = f"{name}-{version}.dist-info"
    contents = {f"{name}/__init__.py": f"__version__ = {version!r}\n", **(files or {})}
    metadata = "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                        *(f"Requires-Dist: {r}\n" for r in requires)])
    contents[f"{dist_info}/METADATA"] = metadata
    contents[f"{dist_info}/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: rs-seg-tests\n"
                                      "Root-Is-Purelib: true\nTag: py3-none-any\n")
    record = "".join(f"{path},{_digest(text.encode())},{len(text.encode())}\n"
                     for path, text in contents.items())
    contents[f"{dist_info}/RECORD"] = record + f"{dist_info}/RECORD,,\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in contents.items():
            zf.writestr(path, text)
    return wheel
