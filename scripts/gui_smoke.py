"""Screenshot of QGIS desktop with the RS Seg dock open (under Xvfb), as a GUI smoke test.

Prepares a small sample scene and a quickly fitted model, a fresh QGIS profile with the plugin
enabled from this working tree, then starts ``qgis`` under ``xvfb-run`` with a ``--code`` script
that opens the dock, segments the scene through it, and saves a screenshot of the main window.

Usage: python scripts/gui_smoke.py [--out build/test-output/gui_dock.png] [--work DIR]
Exit status 0 when the screenshot was written; the in-QGIS log is printed on failure.

``--desktop`` (``make qgis``) instead starts QGIS for real on this display with the same set-up:
the plugin from this working tree enabled in the profile build/qgis-desktop, opening
build/demo/demo.qgz when `make demo` made it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Step helpers of the in-QGIS scripts (here, gui_states.py, install_shot.py): finish() writes the
# status file and leaves QGIS at once (no exit dialogs, no teardown races: the screenshots are
# on disk); a step decorated with guard() turns an exception into an ERROR status.
STEP_HELPERS = r'''
import os, traceback
from qgis.core import QgsProject
STATUS = os.environ["RS_SEG_STATUS"]


def finish(text):
    with open(STATUS, "w") as f:
        f.write(text)
    QgsProject.instance().setDirty(False)
    os._exit(0)


def guard(step):
    def run():
        try:
            step()
        except Exception:
            finish("ERROR\n" + traceback.format_exc())
    return run
'''

# Runs inside QGIS (after the plugins loaded).  Errors go to the status file, then QGIS exits.
IN_QGIS = STEP_HELPERS + r'''
from qgis.core import QgsApplication, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QTimer
from qgis.utils import iface, plugins

SHOT = os.environ["RS_SEG_SHOT"]
RASTER, MODEL = os.environ["RS_SEG_RASTER"], os.environ["RS_SEG_MODEL"]
state = {"ticks": 0}


def fail():
    finish("ERROR\n" + traceback.format_exc())


def start():
    try:
        plugin = plugins["rs_seg_qgis"]
        window = iface.mainWindow()
        window.resize(1600, 1000)
        window.move(0, 0)
        layer = QgsRasterLayer(RASTER, "sample t1")
        QgsProject.instance().addMapLayer(layer)
        iface.mapCanvas().setExtent(layer.extent())
        plugin.show_dock(True)
        dock = plugin.dock
        window.resizeDocks([dock], [440], 0x1)  # Qt.Horizontal: a readable dock width
        dock.segment.layer.setLayer(layer)
        dock.segment.model.refresh(MODEL)
        dock.segment.device.set_value("cpu")
        dock.segment.polygons.setChecked(True)
        state["task"] = dock.run_segment()
        QTimer.singleShot(200, wait)
    except Exception:
        fail()


def wait():
    try:
        state["ticks"] += 1
        done = any(g.name().startswith("Segment") for g in
                   QgsProject.instance().layerTreeRoot().children())
        if not done and state["ticks"] < 300:
            QTimer.singleShot(200, wait)
            return
        iface.mapCanvas().refreshAllLayers()
        QTimer.singleShot(2500, shoot)  # let the canvas render
    except Exception:
        fail()


def shoot():
    try:
        QgsApplication.processEvents()
        ok = iface.mainWindow().grab().save(SHOT, "PNG")
        dock = plugins["rs_seg_qgis"].dock
        for index in range(1, dock.tabs.count()):  # the other tabs, dock only, for review
            dock.tabs.setCurrentIndex(index)
            QgsApplication.processEvents()
            name = dock.tabs.tabText(index).lower().replace(" ", "_")
            dock.grab().save(SHOT[:-4] + f"_{name}.png", "PNG")
        dock.tabs.setCurrentIndex(0)
        finish(f"OK {ok}\nplugins {sorted(plugins)}\n")
    except Exception:
        fail()


QTimer.singleShot(1500, start)
'''


def plugin_folder(work: Path) -> Path:
    """A folder holding a link to this tree's plugin (QGIS_PLUGINPATH wants the parent)."""
    plugins = work / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    link = plugins / "rs_seg_qgis"
    if not link.exists():
        link.symlink_to(ROOT / "rs_seg_qgis")
    return plugins


def enable_plugin(profiles: Path, extra: str = "") -> None:
    """Enable rs_seg_qgis in ``<profiles>/profiles/default`` (a fresh profile has nothing on)."""
    ini = profiles / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True, exist_ok=True)
    text = ini.read_text() if ini.exists() else ""
    if "rs_seg_qgis=true" in text:
        return
    if "[PythonPlugins]" in text:
        text = text.replace("[PythonPlugins]\n", "[PythonPlugins]\nrs_seg_qgis=true\n", 1)
    else:
        text += "\n[PythonPlugins]\nrs_seg_qgis=true\n"
    ini.write_text(text + extra)


def qgis_env(plugins: Path, runtime: Path) -> dict:
    """Desktop QGIS environment: xcb, the plugin folder, repo + venv on PYTHONPATH."""
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    return {**{k: v for k, v in os.environ.items() if not k.startswith("QGIS_")},
            # offscreen (the Makefile's default) makes desktop QGIS die on signal 11
            "QT_QPA_PLATFORM": "xcb", "XDG_RUNTIME_DIR": str(runtime),
            "QGIS_PLUGINPATH": str(plugins),
            "PYTHONPATH": f"{ROOT}:{sysconfig.get_paths()['purelib']}"}


def desktop() -> int:
    """Start QGIS for real with the plugin from this tree (``make qgis``)."""
    work = ROOT / "build" / "qgis-desktop"
    profiles = work / "profiles"
    enable_plugin(profiles)
    cmd = ["qgis", "--noversioncheck", "--profiles-path", str(profiles)]
    project = ROOT / "build" / "demo" / "demo.qgz"
    if project.is_file():
        cmd += ["--project", str(project)]
    return subprocess.call(cmd, env=qgis_env(plugin_folder(work), work / "runtime"))


def prepare(work: Path) -> dict:
    """Sample scene, a fitted minimum-distance model, profile and plugin folder in ``work``."""
    from engine.sample import make_sample
    from engine.training import train
    scene = work / "scene"
    make_sample(scene, size=256, seed=1)
    models = work / "models"
    models.mkdir(exist_ok=True)
    model = models / "mindist.rsmodel"
    if not model.exists():
        train(out=str(model), images=[str(scene / "t1.tif")], labels=[str(scene / "labels.tif")],
              arch="mindist", tile=64, device="cpu")
    profiles = work / "qgis-profiles"  # QGIS reads <profiles>/profiles/default/QGIS/QGIS3.ini
    enable_plugin(profiles, f"\n[rs_seg]\nmodels_folder={models}\n")
    return {"raster": scene / "t1.tif", "model": model, "profiles": profiles,
            "plugins": plugin_folder(work)}


def run_under_xvfb(code: str, paths: dict, work: Path, env: dict, timeout: int) -> tuple:
    """Run desktop QGIS under Xvfb with the in-QGIS script ``code`` (``RS_SEG_STATUS`` and
    ``env`` in its environment); returns (status text, QGIS's output)."""
    script = work / "in_qgis.py"
    script.write_text(code)
    status = work / "status.txt"
    status.unlink(missing_ok=True)
    full_env = {**qgis_env(paths["plugins"], work / "runtime"), "RS_SEG_STATUS": str(status),
                **env}
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24 -nolisten tcp",
           "qgis", "--noversioncheck", "--nologo", "--profiles-path", str(paths["profiles"]),
           "--code", str(script)]
    # own session: on a timeout the whole group (xvfb-run, Xvfb, qgis) goes, not only xvfb-run
    proc = subprocess.Popen(cmd, env=full_env, cwd=work, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log = f"timed out after {timeout} s\n" + (proc.communicate()[0] or "")
    return (status.read_text() if status.exists() else "no status written"), log


def run(out: Path, work: Path, timeout: int = 240) -> int:
    if shutil.which("xvfb-run") is None:
        print("xvfb-run is missing: apt-get install -y xvfb xauth", file=sys.stderr)
        return 2
    work.mkdir(parents=True, exist_ok=True)
    paths = prepare(work)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    text, log = run_under_xvfb(IN_QGIS, paths, work, {
        "RS_SEG_SHOT": str(out), "RS_SEG_RASTER": str(paths["raster"]),
        "RS_SEG_MODEL": str(paths["model"])}, timeout)
    if not text.startswith("OK") or not out.is_file():
        print(text, "\n--- qgis output ---\n", log[-6000:], file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "test-output" / "gui_dock.png")
    parser.add_argument("--work", type=Path, default=None,
                        help="scratch folder (default: a temporary one)")
    parser.add_argument("--desktop", action="store_true",
                        help="start QGIS on this display instead (make qgis)")
    args = parser.parse_args()
    if args.desktop:
        return desktop()
    if args.work is not None:
        return run(args.out.resolve(), args.work.resolve())
    with tempfile.TemporaryDirectory(prefix="rs_seg_gui_") as tmp:
        return run(args.out.resolve(), Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
