"""Screenshots of Install dependencies in the analyst's own QGIS (under Xvfb).

System QGIS, a fresh profile with the packaged zip unzipped into it and **no** project venv:
QGIS starts, the first-run prompt appears in the message bar (main window shot), its button
opens the dialog, which installs the chosen dependencies into the profile's private folder as a
background task (dialog shot when it ended), then Check environment.  Shots go to
build/test-output/install_*.png.

Usage: python3 scripts/install_shot.py [--choice inference] [--wheel-folder DIR] [--out DIR]
Needs xvfb-run; the inference choice downloads onnxruntime (~30 MB) unless --wheel-folder.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from gui_smoke import STEP_HELPERS  # noqa: E402

IN_QGIS = STEP_HELPERS + r'''
import faulthandler
faulthandler.enable(open(os.environ["RS_SEG_STATUS"] + ".crash", "w"))  # a crash's Python stack
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QPushButton
from qgis.utils import iface, plugins

OUT = os.environ["RS_SEG_OUT"]
CHOICE, WHEELS = os.environ["RS_SEG_CHOICE"], os.environ.get("RS_SEG_WHEELS", "")
state = {"ticks": 0}


@guard
def start():
    iface.mainWindow().resize(1400, 900)
    plugins["rs_seg_qgis"].show_dock(True)  # its Install dependencies… button shows too
    QTimer.singleShot(1000, prompt)


@guard
def prompt():
    window = iface.mainWindow()
    items = iface.messageBar().items()
    texts = [i.text() for i in items]
    window.grab().save(os.path.join(OUT, "install_prompt.png"), "PNG")
    button = [b for i in items for b in i.findChildren(QPushButton)
              if b.text() in ("Install dependencies…", "Repair…")]
    if not button:
        finish(f"ERROR no first-run prompt; message bar: {texts}")
    state["prompt"] = texts
    button[0].click()
    QTimer.singleShot(500, install)


@guard
def install():
    dialog = plugins["rs_seg_qgis"]._install_dialog
    state["dialog"] = dialog
    keys = [c.key for c in dialog.options]
    dialog.group.button(keys.index(CHOICE)).setChecked(True)
    dialog.wheel_folder.setFilePath(WHEELS)
    dialog.grab().save(os.path.join(OUT, "install_dialog_ready.png"), "PNG")
    dialog.start()
    QTimer.singleShot(500, wait)


@guard
def wait():
    dialog = state["dialog"]
    state["ticks"] += 1
    if dialog.task is not None and state["ticks"] < 1200:
        if state["ticks"] == 4:
            dialog.grab().save(os.path.join(OUT, "install_dialog_running.png"), "PNG")
        QTimer.singleShot(250, wait)
        return
    QTimer.singleShot(500, shoot)


@guard
def shoot():
    state["dialog"].grab().save(os.path.join(OUT, "install_dialog.png"), "PNG")
    plugins["rs_seg_qgis"].show_diagnostics()  # Check environment after the install
    QTimer.singleShot(1000, report)


@guard
def report():
    dialog = state["dialog"]
    plugins["rs_seg_qgis"]._diagnostics_dialog.grab().save(
        os.path.join(OUT, "install_diagnostics.png"), "PNG")
    from rs_seg_qgis import deps
    dock = plugins["rs_seg_qgis"].dock
    finish(f"OK\nprompt {state['prompt']}\noutcome {dialog.outcome.text()}\n"
           f"onnxruntime {deps.installed_version('onnxruntime')}\n"
           f"dock install button visible {dock.install_deps.isVisible()}\n"
           f"message bar {[i.text() for i in iface.messageBar().items()]}\n")


QTimer.singleShot(2500, start)
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--choice", default="inference", choices=["inference", "cpu", "gpu"])
    parser.add_argument("--wheel-folder", default="")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "test-output")
    parser.add_argument("--timeout", type=int, default=420)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rs_seg_install_") as tmp:
        work = Path(tmp)
        package = subprocess.run([sys.executable, str(ROOT / "scripts" / "package.py"), "--out",
                                  str(work / "rs_seg_qgis.zip")], capture_output=True, text=True)
        if package.returncode != 0:
            print(package.stdout + package.stderr, file=sys.stderr)
            return 1
        profiles = work / "profiles"
        default = profiles / "profiles" / "default"
        (default / "python" / "plugins").mkdir(parents=True)
        with zipfile.ZipFile(work / "rs_seg_qgis.zip") as zf:
            zf.extractall(default / "python" / "plugins")
        (default / "QGIS").mkdir()
        (default / "QGIS" / "QGIS3.ini").write_text("[PythonPlugins]\nrs_seg_qgis=true\n")
        code, status = work / "in_qgis.py", work / "status.txt"
        code.write_text(IN_QGIS)
        runtime = work / "runtime"
        runtime.mkdir(mode=0o700)
        # a user's machine: no venv, no repository on PYTHONPATH; pip's own settings kept
        env = {k: v for k, v in os.environ.items()
               if k.startswith("PIP_") or k in ("PATH", "HOME", "LANG", "http_proxy",
                                                "https_proxy")}
        env.update({"QT_QPA_PLATFORM": "xcb", "XDG_RUNTIME_DIR": str(runtime),
                    "RS_SEG_OUT": str(args.out.resolve()), "RS_SEG_STATUS": str(status),
                    "RS_SEG_CHOICE": args.choice, "RS_SEG_WHEELS": args.wheel_folder})
        cmd = ["xvfb-run", "-a", "-s", "-screen 0 1400x900x24 -nolisten tcp", "qgis",
               "--noversioncheck", "--nologo", "--profiles-path", str(profiles),
               "--code", str(code)]
        proc = subprocess.Popen(cmd, env=env, cwd=work, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            log, _ = proc.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            log = f"timed out after {args.timeout} s\n" + (proc.communicate()[0] or "")
        text = status.read_text() if status.exists() else "no status written"
        crash = work / "status.txt.crash"
        if not text.startswith("OK") and crash.exists():
            text += "\n" + crash.read_text()
        print(text)
        if not text.startswith("OK"):
            print("--- qgis output ---\n" + log[-6000:], file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
