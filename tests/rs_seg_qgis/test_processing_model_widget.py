"""The Processing dialogs' model picker: the models folder's models by name, and any path."""
from __future__ import annotations

import shutil

import pytest
from qgis.core import QgsApplication
from qgis.PyQt.QtWidgets import QWidget

from rs_seg_qgis import settings
from tests.conftest import make_model

pytestmark = pytest.mark.qgis


class Dialog(QWidget):
    """Stands in for the algorithm dialog (its class name picks the standard form)."""


def test_model_parameters_use_the_picker_and_it_lists_the_models_folder(provider, tmp_path):
    from processing.gui.wrappers import WidgetWrapperFactory
    folder = tmp_path / "models"
    folder.mkdir()
    model = make_model(tmp_path / "roofs.rsmodel", base=4, depth=2, tile=32, overlap=8)
    shutil.copy(model, folder / "roofs.rsmodel")
    settings.set_models_folder(folder)
    try:
        alg = QgsApplication.processingRegistry().algorithmById("rs_seg:segment")
        param = alg.parameterDefinition("MODEL")
        wrapper = WidgetWrapperFactory.create_wrapper(param, Dialog())
        assert type(wrapper).__name__ == "ModelFileWrapper"
        assert [wrapper.combo.itemText(i) for i in range(wrapper.combo.count())] == \
            ["roofs · unet, 6 classes"]
        assert wrapper.value() is None  # nothing chosen yet
        wrapper.combo.setCurrentIndex(0)
        assert wrapper.value() == str(folder / "roofs.rsmodel")
        wrapper.setValue(str(model))  # a path outside the folder, as a script or Browse gives
        assert wrapper.value() == str(model)
        wrapper.setValue(str(folder / "roofs.rsmodel"))
        assert wrapper.combo.currentIndex() == 0
    finally:
        settings.set_models_folder("")
