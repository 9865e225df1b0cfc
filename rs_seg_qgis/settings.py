"""Plugin settings kept in QgsSettings (the user's QGIS profile).

Only small, user-chosen things live here: the models folder and the last used device.
"""
from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication, QgsSettings

PREFIX = "rs_seg"
MODELS_FOLDER_KEY = f"{PREFIX}/models_folder"
DEVICE_KEY = f"{PREFIX}/device"
OUTPUT_FOLDER_KEY = f"{PREFIX}/output_folder"


def default_models_folder() -> Path:
    """``<QGIS profile>/rs_seg_models``: travels with the profile, writable by the user."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "rs_seg_models"


def models_folder(create: bool = True) -> Path:
    """The folder the model manager lists (created on first use unless ``create`` is False)."""
    value = QgsSettings().value(MODELS_FOLDER_KEY, "", type=str)
    folder = Path(value) if value else default_models_folder()
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def set_models_folder(folder: str | Path) -> None:
    """Remember ``folder`` as the models folder; an empty value restores the default."""
    QgsSettings().setValue(MODELS_FOLDER_KEY, str(folder) if folder else "")


def output_folder() -> str:
    """Folder for run outputs; empty means QGIS's temporary processing folder."""
    return QgsSettings().value(OUTPUT_FOLDER_KEY, "", type=str)


def set_output_folder(folder: str) -> None:
    QgsSettings().setValue(OUTPUT_FOLDER_KEY, folder or "")


def last_device() -> str:
    """The device chosen last time (``auto`` by default)."""
    return QgsSettings().value(DEVICE_KEY, "auto", type=str)


def set_last_device(device: str) -> None:
    QgsSettings().setValue(DEVICE_KEY, device)
