"""GUI smoke test: desktop QGIS under Xvfb with the plugin enabled opens the RS Seg dock, runs a
segmentation through it, and a screenshot is saved (tmp folder and build/test-output/)."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.qgis


@pytest.mark.skipif(shutil.which("xvfb-run") is None,
                    reason="xvfb-run is missing (apt-get install -y xvfb xauth)")
@pytest.mark.skipif(shutil.which("qgis") is None, reason="desktop qgis is not installed")
def test_dock_screenshot_under_xvfb(tmp_path):
    shot = tmp_path / "gui_dock.png"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gui_smoke.py"), "--out",
                        str(shot), "--work", str(tmp_path / "work")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    from qgis.PyQt.QtGui import QImage
    image = QImage(str(shot))
    assert image.width() >= 1200 and image.height() >= 800
    # not blank: many distinct colours (widgets, text, the styled class raster)
    colours = {image.pixel(x, y) for x in range(0, image.width(), 7)
               for y in range(0, image.height(), 7)}
    assert len(colours) > 50, len(colours)
    for tab in ("compare_dates", "train", "models"):
        assert (tmp_path / f"gui_dock_{tab}.png").is_file()
    keep = ROOT / "build" / "test-output"
    keep.mkdir(parents=True, exist_ok=True)
    for png in tmp_path.glob("gui_dock*.png"):
        shutil.copy(png, keep / png.name)
