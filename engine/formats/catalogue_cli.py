"""``python -m engine models list`` and ``python -m engine models get NAME --folder DIR``."""
from __future__ import annotations

import argparse

from ..jobs import InputError
from .model_catalogue import CatalogueEntry, find_entry, get_model, load_catalogues

COMMAND = "models"
HELP = "list the model catalogue, or download a model from it (SAM, Deepness zoo, your own)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``models``."""
    p.add_argument("action", choices=("list", "get"), help="list the catalogue, or get NAME")
    p.add_argument("name", nargs="?", help="with get: the model's name (see models list)")
    p.add_argument("--catalogue", action="append", default=[], metavar="FILE_OR_URL",
                   help="another catalogue (JSON file or https:// URL), after the built-in one; "
                        "repeatable")
    p.add_argument("--folder", default="models",
                   help="with get: the models folder to download into (default ./models)")
    p.add_argument("--proxy", help="http://user:password@host:port (default: the environment's)")


def describe(entry: CatalogueEntry) -> str:
    """The catalogue line of one entry: name, task, classes, bands, GSD, size, licence."""
    classes = ", ".join(entry.classes) if entry.classes else "objects under a click"
    gsd = f"{entry.gsd_m:g} m" if entry.gsd_m else "any GSD"
    return (f"{entry.name:<22} {entry.task:<12} {entry.size_text:>8}  {gsd:<8} "
            f"bands {','.join(entry.bands) or '?'}\n"
            f"{'':<22} {entry.title}\n{'':<22} classes: {classes}\n"
            f"{'':<22} licence: {entry.licence}; {entry.checksum_text}\n"
            f"{'':<22} {entry.url}")


def run(args: argparse.Namespace, progress=None) -> None:
    """List the catalogue or download one model and print where it went."""
    entries = load_catalogues(args.catalogue, args.proxy)
    if args.action == "list":
        for entry in entries:
            print(describe(entry))
        return
    if not args.name:
        raise InputError("models get needs a NAME: python -m engine models get sam-vit-b "
                         "(python -m engine models list shows the names)")
    entry = find_entry(entries, args.name)
    path = get_model(entry, args.folder, args.proxy, progress=progress)
    verified = "checksum verified" if entry.sha256 else entry.checksum_text
    print(f"{entry.name}: {path} ({verified})")
