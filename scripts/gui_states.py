"""Screenshots of an analyst's first hour in QGIS (under Xvfb), one PNG per state.

A fresh profile with the plugin from this tree, two sample dates in the project, no model yet,
and a catalogue served on 127.0.0.1 (no internet).  In QGIS the script then walks the states
and saves, into the output folder:

  gui_1_fresh.png         the dock at its default width, Segment tab: what to do without a model
  gui_2_environment.png   Check environment (the state after the dependency install)
  gui_3_catalogue.png     Models tab ▸ Get models: the catalogue and an entry's details
  gui_4_first_model.png   the downloaded model selected in the Segment tab
  gui_5_segment.png       after Segment: the styled result on top of the layer tree
  gui_6_change.png        after Compare dates (CVA: no change model needed)
  gui_7_click.png         click to segment: the previewed region

Usage: python scripts/gui_states.py [--out build/test-output] [--work DIR]
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import shutil
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from gui_smoke import STEP_HELPERS, enable_plugin, plugin_folder, run_under_xvfb  # noqa: E402

STATES = ("1_fresh", "2_environment", "3_catalogue", "4_first_model", "5_segment", "6_change",
          "7_click")

# Runs inside QGIS after the plugins loaded: one step at a time, each waiting for its result.
IN_QGIS = STEP_HELPERS + r'''
from qgis.core import QgsApplication, QgsProject, QgsRasterLayer, QgsPointXY
from qgis.PyQt.QtCore import QTimer
from qgis.utils import iface, plugins

OUT = os.environ["RS_SEG_OUT"]
T1, T2, CATALOGUE = os.environ["RS_SEG_T1"], os.environ["RS_SEG_T2"], os.environ["RS_SEG_CATALOGUE"]
log = []


def later(ms, step):
    QTimer.singleShot(ms, guard(step))


def wait(predicate, then, ticks=600):
    def poll():
        if predicate() or poll.ticks <= 0:
            if poll.ticks <= 0:
                log.append(f"gave up waiting before {then.__name__}")
            later(1500, then)
            return
        poll.ticks -= 1
        later(200, poll)
    poll.ticks = ticks
    later(200, poll)


def shoot(name, widget=None):
    QgsApplication.processEvents()
    ok = (widget or iface.mainWindow()).grab().save(os.path.join(OUT, f"gui_{name}.png"), "PNG")
    log.append(f"{name} {ok}")


def groups():
    return [g.name() for g in QgsProject.instance().layerTreeRoot().children()]


def start():
    window = iface.mainWindow()
    window.resize(1600, 1000)
    window.move(0, 0)
    for path, name in ((T1, "ortho 2021-05-14"), (T2, "ortho 2023-06-02")):
        QgsProject.instance().addMapLayer(QgsRasterLayer(path, name))
    iface.mapCanvas().setExtent(QgsProject.instance().mapLayersByName("ortho 2023-06-02")[0].extent())
    plugin = plugins["rs_seg_qgis"]
    plugin.show_dock(True)  # its default width: every control must be reachable there
    later(2500, fresh)


def fresh():
    dock = plugins["rs_seg_qgis"].dock
    log.append(f"dock width {dock.width()}; segment enabled {dock.segment.run.isEnabled()}")
    shoot("1_fresh")
    plugins["rs_seg_qgis"].show_diagnostics()
    later(1500, environment)


def environment():
    dialog = plugins["rs_seg_qgis"]._diagnostics_dialog
    shoot("2_environment", dialog)
    dialog.close()
    dock = plugins["rs_seg_qgis"].dock
    dock.segment.get_models.click()  # the empty state's button opens the Models tab
    panel = dock.models.catalogue
    panel.extra.setText(CATALOGUE)
    panel.load()
    panel.select("demo-land-cover")
    later(1500, catalogue)


def catalogue():
    shoot("3_catalogue")
    dock = plugins["rs_seg_qgis"].dock
    dock.models.catalogue.start_download()
    wait(lambda: dock.models.catalogue.task is None and dock.segment.model.path(), first_model)


def first_model():
    dock = plugins["rs_seg_qgis"].dock
    dock.tabs.setCurrentIndex(0)
    log.append(f"model {dock.segment.model.path()}")
    later(800, first_model_shot)


def first_model_shot():
    shoot("4_first_model")
    dock = plugins["rs_seg_qgis"].dock
    dock.segment.device.set_value("cpu")
    dock.segment.polygons.setChecked(True)
    dock.run_segment()
    wait(lambda: any(n.startswith("Segment") for n in groups()), segmented)


def segmented():
    iface.mapCanvas().refreshAllLayers()
    later(2500, segment_shot)


def segment_shot():
    shoot("5_segment")
    dock = plugins["rs_seg_qgis"].dock
    dock.tabs.setCurrentIndex(1)
    dock.change.device.set_value("cpu")
    dock.run_change()
    wait(lambda: any(n.startswith("Change") for n in groups()), changed)


def changed():
    iface.mapCanvas().refreshAllLayers()
    later(2500, change_shot)


def change_shot():
    shoot("6_change")
    plugin = plugins["rs_seg_qgis"]
    plugin.dock.tabs.setCurrentIndex(0)
    for group in QgsProject.instance().layerTreeRoot().children()[:2]:  # the imagery shows
        group.setItemVisibilityChecked(False)
    plugin.click_action.setChecked(True)
    centre = iface.mapCanvas().extent().center()
    plugin.map_tool.click(QgsPointXY(centre.x(), centre.y()))
    wait(lambda: plugin.map_tool.preview is not None, click_shot)


def click_shot():
    shoot("7_click")
    finish("OK\n" + "\n".join(log))


later(1500, start)
'''


def prepare(work: Path) -> dict:
    """Sample dates, a fitted model served by a catalogue, an empty models folder, a profile."""
    from engine.sample import make_sample
    from engine.training import train
    scene = work / "scene"
    make_sample(scene, size=256, seed=1)
    served = work / "served"
    served.mkdir(parents=True, exist_ok=True)
    model = served / "land_cover.rsmodel"
    if not model.exists():
        train(out=str(model), images=[str(scene / "t1.tif")], labels=[str(scene / "labels.tif")],
              arch="mindist", tile=64, device="cpu")
    models = work / "models"  # empty: the fresh profile has no model yet
    shutil.rmtree(models, ignore_errors=True)
    models.mkdir()
    profiles = work / "qgis-profiles"
    shutil.rmtree(profiles, ignore_errors=True)
    enable_plugin(profiles, f"\n[rs_seg]\nmodels_folder={models}\n")
    return {"scene": scene, "served": served, "model": model, "profiles": profiles,
            "plugins": plugin_folder(work)}


def serve(folder: Path) -> http.server.ThreadingHTTPServer:
    """``folder`` over HTTP on 127.0.0.1 (a free port), in a daemon thread."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass
    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def write_catalogue(paths: dict, port: int) -> Path:
    model = paths["model"]
    catalogue = paths["served"] / "catalogue.json"
    catalogue.write_text(json.dumps({"catalogue_version": 1, "title": "Demo organisation",
                                     "models": [{
        "name": "demo-land-cover", "title": "Land cover, 0.5 m (demo organisation)",
        "task": "segmentation", "url": f"http://127.0.0.1:{port}/{model.name}",
        "file": "land_cover.rsmodel", "classes": ["impervious", "building", "low vegetation",
                                                  "tree", "car", "clutter"],
        "bands": ["R", "G", "B", "NIR"], "gsd_m": 0.5, "size_bytes": model.stat().st_size,
        "licence": "CC-BY-4.0", "source": "https://example.org/models",
        "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "description": "Minimum-distance model fitted on the sample scene."}]}))
    return catalogue


def run(out: Path, work: Path, timeout: int = 420) -> int:
    if shutil.which("xvfb-run") is None:
        print("xvfb-run is missing: apt-get install -y xvfb xauth", file=sys.stderr)
        return 2
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    for state in STATES:
        (out / f"gui_{state}.png").unlink(missing_ok=True)
    paths = prepare(work)
    server = serve(paths["served"])
    try:
        catalogue = write_catalogue(paths, server.server_address[1])
        text, log = run_under_xvfb(IN_QGIS, paths, work, {
            "RS_SEG_OUT": str(out), "RS_SEG_T1": str(paths["scene"] / "t1.tif"),
            "RS_SEG_T2": str(paths["scene"] / "t2.tif"), "RS_SEG_CATALOGUE": str(catalogue)},
            timeout)
    finally:
        server.shutdown()
        server.server_close()
    missing = [s for s in STATES if not (out / f"gui_{s}.png").is_file()]
    print(text)
    if not text.startswith("OK") or missing:
        print(f"missing: {missing}\n--- qgis output ---\n{log[-6000:]}", file=sys.stderr)
        return 1
    print(f"wrote {len(STATES)} screenshots to {out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "test-output")
    parser.add_argument("--work", type=Path, default=None,
                        help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    if args.work is not None:
        return run(args.out.resolve(), args.work.resolve())
    with tempfile.TemporaryDirectory(prefix="rs_seg_states_") as tmp:
        return run(args.out.resolve(), Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
