"""``rs_seg:download_model``: a model from the catalogue into the models folder."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from qgis.core import (QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback,
                       QgsProcessingOutputFile, QgsProcessingParameterFile,
                       QgsProcessingParameterString)

from .. import settings
from ..network import proxy_url
from .base import EngineRun, RsSegAlgorithm, help_html


def builtin_entries() -> List[Any]:
    """The built-in catalogue's entries ([] when the engine cannot be imported)."""
    try:
        from engine.formats.model_catalogue import load_catalogue
        return load_catalogue()
    except Exception:  # the provider must list its algorithms whatever the engine's state
        return []


def entry_label(entry: Any) -> str:
    """'Segment Anything ViT-B (click to segment objects) — 375 MB' for the form (no size
    when the catalogue does not know it)."""
    return f"{entry.title} — {entry.size_text}" if entry.size_bytes else entry.title


class DownloadModelAlgorithm(RsSegAlgorithm):
    ID = "download_model"
    DISPLAY = "Download a model"
    GROUP = "Models"
    GROUP_ID = "models"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return help_html(
            "Downloads a ready-made model from the catalogue into the models folder, where "
            "every RS Seg model picker lists it: Segment Anything checkpoints for clicking "
            "objects, the Deepness model zoo's segmentation models (land cover, buildings, "
            "roads, …), or any entry of a catalogue file or address your organisation keeps. "
            "The download resumes where an interrupted one stopped, uses QGIS's proxy "
            "settings, and is checked against the published SHA-256 where the catalogue has one "
            "(entries without one say so).",
            [("MODEL", "the model to download (built-in catalogue)"),
             ("CATALOGUE", "optional: another catalogue, a JSON file or an https:// address "
                           "(same format, see docs/models.md)"),
             ("NAME", "optional: the name of a model in that catalogue (instead of MODEL)"),
             ("FOLDER", "optional: where to save it (default: the models folder)"),
             ("OUTPUT", "the downloaded file")])

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:  # noqa: N802
        entries = builtin_entries()
        names = [e.name for e in entries]
        self.add_enum("MODEL", "Model", names, names[0] if names else None,
                      optional=True, labels={e.name: entry_label(e) for e in entries})
        self.addParameter(QgsProcessingParameterString(
            "CATALOGUE", "Other catalogue (JSON file or https:// address)", optional=True))
        self.addParameter(QgsProcessingParameterString(
            "NAME", "Model name in that catalogue", optional=True))
        self.addParameter(QgsProcessingParameterFile(
            "FOLDER", "Save into folder (empty: the models folder)",
            behavior=QgsProcessingParameterFile.Folder, optional=True))
        self.addOutput(QgsProcessingOutputFile("OUTPUT", "Downloaded model"))

    def processAlgorithm(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> Dict[str, Any]:  # noqa: N802
        from engine.formats.model_catalogue import find_entry, get_model, load_catalogues

        proxy = proxy_url()
        catalogue = self.parameterAsString(parameters, "CATALOGUE", context).strip()
        name = (self.parameterAsString(parameters, "NAME", context).strip()
                or self.parameterAsEnumString(parameters, "MODEL", context))
        if not name:
            raise QgsProcessingException("Choose a model (MODEL), or give NAME from another "
                                         "catalogue")
        folder = self.parameterAsFile(parameters, "FOLDER", context) or \
            str(settings.models_folder())
        run = EngineRun(context, feedback)
        entries = run.call(load_catalogues, [catalogue] if catalogue else [], proxy, job=False)
        entry = run.call(find_entry, entries, name, job=False)
        feedback.pushInfo(f"{entry.title}: {entry.url} (size {entry.size_text}; licence: "
                          f"{entry.licence}; {entry.checksum_text})")
        path = run.call(get_model, entry, folder, proxy)
        return {"OUTPUT": str(path)}
