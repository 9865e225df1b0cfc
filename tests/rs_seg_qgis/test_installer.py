"""The dependency installer, offline: tiny wheels written by hand are installed with
``--no-index --find-links`` into a private folder (staging, then an atomic swap), with progress,
cancel, failures that keep the previous install, and a half-written folder detected.

``RS_SEG_NETWORK_TESTS=1`` adds a real onnxruntime install from PyPI."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from qgis.core import QgsApplication

from rs_seg_qgis import deps
from rs_seg_qgis.installer import choices, folder, install, pip, startup
from rs_seg_qgis.installer.choices import Choice
from tests.conftest import ROOT
from tests.rs_seg_qgis.wheels import make_wheel

pytestmark = pytest.mark.qgis

PROBE = Choice("probe", "Probe (test, ~1 kB)", ("rsseg_probe==1.0",), imports=("rsseg_probe",))


@pytest.fixture(autouse=True)
def hermetic_pip(monkeypatch):
    # the machine's pip.conf adds local mirrors; these tests must see only their own wheels
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    yield
    for path in [p for p in sys.path if "rs_seg_packages" in p or "/root/site-" in p]:
        sys.path.remove(path)
    for name in [m for m in sys.modules if m.startswith("rsseg_")]:
        del sys.modules[name]


@pytest.fixture()
def wheels(tmp_path) -> pip.PipOptions:
    folder_ = tmp_path / "wheels"
    make_wheel(folder_, "rsseg_probe", "1.0", ["numpy>=1.0", "rsseg_dep>=0.1"])
    make_wheel(folder_, "rsseg_probe", "2.0", ["rsseg_dep>=0.1"])
    make_wheel(folder_, "rsseg_dep", "0.1", files={"rsseg_dep/data.txt": "x" * 1000})
    make_wheel(folder_, "rsseg_greedy", "1.0", ["numpy>=99"])
    return pip.PipOptions(wheel_folder=str(folder_))


def _pins(path: Path) -> dict:
    pins = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("#")[0].strip().split("==")
            pins[name.lower()] = version
    return pins


def test_choices_carry_the_project_pins_and_sizes():
    pins = _pins(ROOT / "requirements.txt")
    assert deps.TORCH_VERSION == pins["torch"]
    assert deps.SAFETENSORS_PIN == f"safetensors=={pins['safetensors']}"
    if "onnxruntime" in pins:  # pinned by the ONNX work; the installer must follow it
        assert deps.ONNXRUNTIME_VERSION == pins["onnxruntime"]
    from engine.compute.onnx_runtime import ONNXRUNTIME_PIN
    assert ONNXRUNTIME_PIN == f"onnxruntime=={deps.ONNXRUNTIME_VERSION}"
    inference, cpu, gpu = choices.choices(driver=None)
    assert "onnxruntime, ~30 MB" in inference.label and inference.requirements[0] == \
        f"onnxruntime=={deps.ONNXRUNTIME_VERSION}"
    assert not any(r.startswith("torch") for r in inference.requirements)
    assert "torch CPU" in cpu.label and "MB" in cpu.label
    assert cpu.requirements[0] == "torch==2.13.0+cpu"
    assert cpu.extra_index_url == "https://download.pytorch.org/whl/cpu"
    assert not gpu.available and "nvidia-smi" in gpu.reason
    gpu = choices.by_key("gpu", driver="575.51.03")
    assert gpu.available and "CUDA 12.8" in gpu.label and "575.51.03" in gpu.label
    assert gpu.requirements[0] == "torch==2.13.0+cu128"
    assert gpu.extra_index_url.endswith("/cu128") and "GB" in gpu.label
    assert choices.by_key("gpu", driver="580.65").requirements[0].endswith("+cu130")


def test_commands_target_a_staging_folder_with_wheel_folder_and_proxy(tmp_path):
    offline = pip.PipOptions(wheel_folder="/media/wheels", proxy="http://proxy:3128")
    cpu = choices.by_key("cpu")
    target = tmp_path / "staging-x"
    command = pip.install_command("/usr/bin/python3", cpu, offline, target,
                                  [("torch", "2.13.0+cpu"), ("sympy", "1.14.0")])
    assert command[:4] == ["/usr/bin/python3", "-m", "pip", "install"]
    assert command[command.index("--target") + 1] == str(target) and "--no-deps" in command
    assert command[command.index("--find-links") + 1] == "/media/wheels"
    assert "--no-index" in command and "--extra-index-url" not in command
    assert command[command.index("--proxy") + 1] == "http://proxy:3128"
    assert command[-2:] == ["torch==2.13.0+cpu", "sympy==1.14.0"]
    assert "--user" not in command and "site-packages" not in " ".join(command)
    online = pip.resolve_command("py", cpu, pip.PipOptions(), Path("r.json"), Path("c.txt"))
    assert "--dry-run" in online and online[online.index("--report") + 1] == "r.json"
    assert online[online.index("-c") + 1] == "c.txt" and "--target" not in online
    assert online[online.index("--extra-index-url") + 1] == "https://download.pytorch.org/whl/cpu"


def test_constraints_pin_what_qgis_ships_and_forbid_what_it_lacks():
    text = pip.constraints_text({"numpy": "1.24.2", "gdal": "3.6.2"})
    lines = text.splitlines()
    assert "numpy==1.24.2" in lines and "gdal==3.6.2" in lines
    assert "rasterio<0" in lines and "shapely<0" in lines  # never installed by us


def test_progress_follows_pip_output():
    progress = pip.Progress(2)
    assert progress.feed("Looking in links: /w") is None
    first = progress.feed("Collecting torch==2.13.0+cpu")
    assert first == (0.0, "1/2 torch==2.13.0+cpu")
    fraction, text = progress.feed("  Downloading torch-2.13.0+cpu-cp311-linux.whl (192.0 MB)")
    assert fraction == 0.0 and "downloading torch-2.13.0+cpu-cp311-linux.whl (192.0 MB)" in text
    assert progress.feed("Processing ./w/sympy-1.14.0-py3-none-any.whl")[0] == pytest.approx(0.45)
    assert progress.feed("Installing collected packages: torch, sympy")[0] == 0.9


def test_pip_runs_with_the_python_behind_qgis_not_the_first_on_path(monkeypatch, tmp_path):
    # desktop QGIS on Debian reports a pyenv shim as sys.executable (measured); qgis_process
    # reports itself: both must give the interpreter of QGIS's own prefix
    shim = tmp_path / "shims" / "python3"
    shim.parent.mkdir()
    shim.write_text("#!/bin/sh\necho 3.11.7 23.0.1\n")
    shim.chmod(0o755)
    own = {Path(sys.prefix) / "bin", Path(sys.base_prefix) / "bin"}
    for executable in (str(shim), "/usr/bin/qgis_process.bin"):
        monkeypatch.setattr(sys, "executable", executable)
        assert Path(deps.python_command()).parent in own, executable
    monkeypatch.undo()
    assert deps.python_command() == sys.executable  # a venv's python is its own
    assert pip.check_python(sys.executable) is None
    problem = pip.check_python(str(shim))
    assert "is Python 3.11.7 but QGIS runs Python" in problem


def test_offline_install_goes_live_without_touching_numpy(tmp_path, wheels):
    root = tmp_path / "profile" / "rs_seg_packages" / "py"
    seen = []
    result = install.install(PROBE, wheels, root, progress=lambda f, t: seen.append((f, t)))
    health = folder.check(root)
    assert health.state == "ok" and health.site == result.site
    assert health.marker["choice"] == "probe" and health.marker["packages"] == \
        [["rsseg_probe", "1.0"], ["rsseg_dep", "0.1"]]
    assert sorted(result.packages) == [("rsseg_dep", "0.1"), ("rsseg_probe", "1.0")]
    names = {p.name for p in result.site.iterdir()}
    assert {"rsseg_probe", "rsseg_dep"} <= names
    assert not [n for n in names if n.lower().startswith("numpy")]  # QGIS's numpy is used
    assert not list(root.glob("staging-*"))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("1/2" in t for _, t in seen) and any("2/2" in t for _, t in seen)
    assert any("--find-links" in line and "--no-index" in line for line in result.log)
    folder.activate(root)
    assert sys.path[0] == str(result.site)
    import rsseg_probe
    assert rsseg_probe.__version__ == "1.0" and rsseg_probe.__file__.startswith(str(result.site))


def test_failed_install_leaves_the_previous_one_working(tmp_path, wheels):
    root = tmp_path / "root"
    first = install.install(PROBE, wheels, root)
    greedy = Choice("greedy", "wants numpy 99", ("rsseg_greedy==1.0",))
    with pytest.raises(install.InstallError) as err:
        install.install(greedy, wheels, root)
    assert "could not resolve" in str(err.value) and "numpy" in str(err.value)
    missing = Choice("missing", "not in the folder", ("rsseg_nowhere==1.0",))
    with pytest.raises(install.InstallError):
        install.install(missing, wheels, root)
    health = folder.check(root)
    assert health.state == "ok" and health.site == first.site and health.marker["choice"] == "probe"
    assert not list(root.glob("staging-*"))


def test_cancel_mid_install_stops_pip_and_keeps_the_previous_one(tmp_path, wheels):
    root = tmp_path / "root"
    first = install.install(PROBE, wheels, root)
    newer = Choice("newer", "probe 2", ("rsseg_probe==2.0",))
    state = {"cancel": False}

    def progress(fraction, text):
        if text.startswith("1/"):  # pip install is running: cancel now
            state["cancel"] = True

    with pytest.raises(install.InstallCancelled):
        install.install(newer, wheels, root, progress=progress, cancelled=lambda: state["cancel"])
    assert folder.check(root).site == first.site and not list(root.glob("staging-*"))
    assert (first.site / "rsseg_probe-1.0.dist-info").is_dir()


def test_half_written_folder_is_detected_kept_off_sys_path_and_repaired(tmp_path, wheels):
    root = tmp_path / "root"
    first = install.install(PROBE, wheels, root)
    (first.site / "rsseg_dep" / "data.txt").unlink()  # e.g. a copy interrupted by a full disk
    health = folder.check(root)
    assert health.state == "broken" and "rsseg_dep/data.txt" in health.problem
    assert folder.activate(root).state == "broken" and str(first.site) not in sys.path
    offer = startup.prompt(root)
    assert offer is not None and offer[1] == "Repair…" and "damaged" in offer[0]
    (first.site / folder.MARKER).unlink()
    assert "half-written" in folder.check(root).problem
    repaired = install.install(PROBE, wheels, root)  # repair = a fresh install + swap
    assert folder.check(root).state == "ok" and not first.site.exists()
    assert startup.prompt(root) is None  # healthy again, and torch is there
    assert repaired.site.is_dir()


def test_unmet_requirements_are_named(tmp_path):
    site = tmp_path / "site"
    wheel = make_wheel(tmp_path / "w", "rsseg_lonely", "1.0", ["rsseg_absent>=2", "numpy>=1"])
    import zipfile
    zipfile.ZipFile(wheel).extractall(site)
    unmet = install.unmet_requirements(site, pip.host_paths())
    assert unmet == ["rsseg-lonely needs rsseg_absent>=2 (missing)"]


def test_cleanup_drops_stale_staging_and_old_sites(tmp_path, wheels):
    root = tmp_path / "root"
    live = install.install(PROBE, wheels, root).site
    old = root / "site-old"
    old.mkdir()
    stale = root / "staging-old"
    stale.mkdir()
    os.utime(stale, (time.time() - 2 * folder.STALE_STAGING_S,) * 2)
    fresh = root / "staging-now"  # another QGIS may be installing right now
    fresh.mkdir()
    folder.cleanup(root)
    assert live.is_dir() and fresh.is_dir() and not old.exists() and not stale.exists()


def test_version_check_refuses_another_torch_release(monkeypatch):
    real = deps.installed_version
    monkeypatch.setattr(deps, "installed_version",
                        lambda name: "2.5.1" if name == "torch" else real(name))
    problem = deps.version_problem("torch")
    assert problem.startswith("torch 2.5.1") and "supported torch 2.13.x" in problem
    assert deps.INSTALL_BUTTON in problem
    assert "torch" in deps.missing_modules()
    assert deps.install_hint(["torch"]).startswith("torch 2.5.1")
    monkeypatch.setattr(deps, "installed_version", lambda name: "2.13.0+cu128")
    assert deps.version_problem("torch") is None and deps.version_problem("numpy") is None


def test_install_task_makes_the_provider_see_the_new_folder(qgis_app, provider, tmp_path,
                                                            wheels, monkeypatch):
    from rs_seg_qgis.installer import task as task_module
    from rs_seg_qgis.tasks import wait_for
    refreshed = []
    monkeypatch.setattr(provider, "refreshAlgorithms", lambda: refreshed.append(True))
    root = tmp_path / "root"
    done = []
    lines = []
    installing = task_module.start_install(PROBE, wheels, root, done.append)
    installing.line.connect(lines.append)
    assert wait_for(lambda: bool(done), 120)
    finished = done[0]
    assert finished.result is not None, finished.error
    assert refreshed and sys.path[0] == str(finished.result.site)
    # this test process has torch imported: the new folder needs a restart for it
    assert "Restart QGIS" in finished.message and "torch" in finished.message
    monkeypatch.setattr(task_module, "RUNTIMES", ("rsseg_not_loaded",))
    assert "no restart needed" in task_module.make_live(root, ["rsseg_probe"])
    monkeypatch.setitem(sys.modules, "engine.compute.backend", object())
    assert "the engine (without torch)" in task_module.make_live(root, ["torch"])
    assert any("1/2" in line for line in lines)


def _slow_python(tmp_path: Path) -> str:
    """A python that stalls in 'pip install --target' like a long download, then runs pip."""
    script = tmp_path / "slow-python"
    script.write_text(f"#!{sys.executable}\nimport os, sys, time\n"
                      f"if '--target' in sys.argv:\n"
                      f"    print('Collecting rsseg_probe==2.0', flush=True)\n"
                      f"    time.sleep(120)\n"
                      f"os.execv({sys.executable!r}, [{sys.executable!r}, *sys.argv[1:]])\n")
    script.chmod(0o755)
    return str(script)


def test_dialog_installs_and_cancel_keeps_the_old_state(qgis_app, tmp_path, wheels, monkeypatch):
    from rs_seg_qgis.gui.install_dialog import InstallDialog
    from rs_seg_qgis.tasks import wait_for
    root = tmp_path / "root"
    newer = Choice("newer", "Probe 2 (test, ~1 kB)", ("rsseg_probe==2.0",))
    dialog = InstallDialog(options=[PROBE, newer], root=root, driver=None)
    assert "Nothing installed" in dialog.state.text()
    dialog.wheel_folder.setFilePath(wheels.wheel_folder)
    assert "--find-links " + wheels.wheel_folder in dialog.command.toPlainText()
    dialog.group.button(0).setChecked(True)
    task = dialog.start()
    assert task is not None and not dialog.install_button.isEnabled()
    assert wait_for(lambda: dialog.task is None, 120)
    assert "Installed Probe" in dialog.outcome.text() and dialog.progress.value() == 100
    first = folder.check(root).site
    assert "Installed now: Probe" in dialog.state.text()

    monkeypatch.setattr(pip, "python", lambda: _slow_python(tmp_path))
    dialog.group.button(1).setChecked(True)
    dialog.start()
    assert wait_for(lambda: "1/2 rsseg_probe" in dialog.log.toPlainText(), 60), \
        dialog.outcome.text()
    started = time.monotonic()
    dialog.cancel_button.click()
    assert wait_for(lambda: dialog.task is None, 60)
    assert time.monotonic() - started < 20  # pip was killed, not waited for
    assert "cancelled" in dialog.outcome.text() and "unchanged" in dialog.outcome.text()
    assert folder.check(root).site == first and not list(root.glob("staging-*"))
    assert QgsApplication.taskManager().countActiveTasks() == 0


def test_first_run_prompt_offers_the_installer(qgis_iface, monkeypatch):
    import rs_seg_qgis
    from qgis.PyQt.QtWidgets import QPushButton
    bar = qgis_iface.messageBar()
    bar.clearWidgets()
    plugin = rs_seg_qgis.classFactory(qgis_iface)
    monkeypatch.setattr(startup, "missing_runtimes", lambda: [])
    plugin._prompt_install()  # what initGui calls last
    assert not bar.items()  # torch here: nothing to offer
    monkeypatch.setattr(startup, "missing_runtimes", lambda: ["torch", "onnxruntime"])
    opened = []
    monkeypatch.setattr(plugin, "show_installer", lambda *_: opened.append(True))
    plugin._prompt_install()
    assert plugin._prompt_item is not None
    items = bar.items()
    assert len(items) == 1 and "torch" in items[0].text() and "onnxruntime" in items[0].text()
    button = [b for b in items[0].findChildren(QPushButton)
              if b.text() == "Install dependencies…"]
    assert button
    button[0].click()
    QgsApplication.processEvents()
    assert opened and not bar.items()  # the prompt goes once it was answered


def test_dock_shows_the_install_button_only_when_needed(qgis_iface, monkeypatch):
    from rs_seg_qgis.gui.dock import RsSegDock
    monkeypatch.setattr(startup, "missing_runtimes", lambda: [])
    dock = RsSegDock(qgis_iface)
    assert not dock.install_deps.isVisibleTo(dock)
    monkeypatch.setattr(startup, "missing_runtimes", lambda: ["torch", "onnxruntime"])
    dock.refresh_install_button()
    assert dock.install_deps.isVisibleTo(dock)
    assert dock.install_deps.text() == "Install dependencies…"
    dock.deleteLater()


def test_diagnostics_name_the_fix_for_each_gpu_problem(qgis_app, monkeypatch):
    import torch
    from rs_seg_qgis.gui.diagnostics import DiagnosticsDialog, diagnostics
    rows = {c.name: c for c in diagnostics(driver=None)}
    for name in ("GDAL (QGIS)", "onnxruntime", "RS Seg packages", "pip (installer)",
                 "NVIDIA GPUs"):
        assert name in rows, name
    assert "CPU build" in rows["torch"].value and rows["pip (installer)"].ok
    # CPU torch on a CUDA machine: the GPU choice of the installer, and the command
    cuda = {c.name: c for c in diagnostics(driver="575.51.03")}["CUDA"]
    assert not cuda.ok and "Install dependencies… ▸ GPU" in cuda.fix and "/whl/cu128" in cuda.fix
    # a CUDA 12.8 build on a driver that is too old for it
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    old = {c.name: c for c in diagnostics(driver="550.54")}["CUDA"]
    assert not old.ok and "needs driver ≥ 570" in old.value and "550.54" in old.value
    assert "update the NVIDIA driver" in old.fix and "/whl/cu126" in old.fix
    dialog = DiagnosticsDialog(diagnostics(driver=None))
    installer = dialog.open_installer()
    assert installer.windowTitle() == "RS Seg — install dependencies"
    installer.close()
    dialog.close()


@pytest.mark.skipif(os.environ.get("RS_SEG_NETWORK_TESTS") != "1",
                    reason="real PyPI install: set RS_SEG_NETWORK_TESTS=1")
def test_real_onnxruntime_install_from_pypi(tmp_path, monkeypatch):
    monkeypatch.undo()  # the machine's pip configuration (proxy, mirrors) applies here
    inference = choices.by_key("inference")
    # QGIS's Python here is Debian's, without the project venv (which has onnxruntime)
    system = [p for p in ("/usr/local/lib/python3.11/dist-packages",
                          "/usr/lib/python3/dist-packages") if os.path.isdir(p)]
    monkeypatch.setattr(pip, "host_paths", lambda exclude=(): system)
    result = install.install(inference, pip.PipOptions(), tmp_path / "root",
                             python="/usr/bin/python3")
    names = {n.lower() for n, _ in result.packages}
    assert "onnxruntime" in names and "numpy" not in names
    assert (result.site / "onnxruntime").is_dir()
    assert not [p for p in result.site.iterdir() if p.name.lower().startswith("numpy")]


def test_pip_output_pipe_is_closed_after_the_run():
    import gc
    import warnings
    lines = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        status = pip.run([sys.executable, "-c", "print('one'); print('two')"],
                                dict(os.environ), lines.append, lambda: False)
        gc.collect()
    assert status == 0 and lines == ["one", "two"]
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], caught
