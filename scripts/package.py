"""Build dist/rs_seg_qgis.zip, installable with QGIS's "Install from ZIP".

The zip holds one folder, ``rs_seg_qgis/``: the plugin files (metadata.txt, icon, Python
modules) and a copy of ``engine/`` in ``rs_seg_qgis/_vendor/``, the folder the plugin's
``__init__`` puts on sys.path (never the plugin folder itself, whose ``processing`` subpackage
would shadow QGIS's Processing plugin).
Caches and tests stay out.  Entries are sorted and time-stamped alike, so the same tree gives
the same zip.

Usage: python scripts/package.py [--out dist/rs_seg_qgis.zip]
"""
from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path
from typing import Iterator, Tuple

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "rs_seg_qgis"
VENDOR = "_vendor"  # must match rs_seg_qgis/__init__.py
EXCLUDED_DIRS = {"__pycache__", "tests", ".pytest_cache", ".mypy_cache"}
EXCLUDED_SUFFIXES = {".pyc", ".pyo", ".orig", ".rej", ".swp"}
FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def _files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        parts = set(path.relative_to(folder).parts)
        if parts & EXCLUDED_DIRS or not path.is_file() or path.suffix in EXCLUDED_SUFFIXES:
            continue
        if path.name.startswith("."):
            continue
        yield path


def entries(root: Path = ROOT) -> Iterator[Tuple[str, Path]]:
    """(name in the zip, file) for the plugin and the engine copy inside it."""
    plugin = root / PLUGIN
    for path in _files(plugin):
        if path.relative_to(plugin).parts[0] in ("engine", VENDOR):
            continue  # a stray engine copy in the tree: the real one is added below
        yield f"{PLUGIN}/{path.relative_to(plugin).as_posix()}", path
    engine = root / "engine"
    for path in _files(engine):
        yield f"{PLUGIN}/{VENDOR}/engine/{path.relative_to(engine).as_posix()}", path


def build(out: Path, root: Path = ROOT) -> Path:
    """Write the plugin zip to ``out`` and return it."""
    if not (root / PLUGIN / "metadata.txt").is_file():
        raise SystemExit(f"{root / PLUGIN / 'metadata.txt'} is missing")
    if f'"{VENDOR}"' not in (root / PLUGIN / "__init__.py").read_text():
        raise SystemExit(f"{PLUGIN}/__init__.py does not look for the engine in {VENDOR}/; "
                         f"update VENDOR in {Path(__file__).name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, path in entries(root):
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o755 if path.stat().st_mode & 0o111 else 0o644) << 16
            zf.writestr(info, path.read_bytes())
    tmp.replace(out)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / f"{PLUGIN}.zip")
    args = parser.parse_args()
    out = build(args.out)
    with zipfile.ZipFile(out) as zf:
        count = len(zf.namelist())
    print(f"wrote {out} ({count} files, {out.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
