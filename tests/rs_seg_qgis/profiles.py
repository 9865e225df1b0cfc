"""A fresh QGIS profile with the packaged plugin zip unzipped into it, as "Install from ZIP"
leaves it on an analyst's machine."""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Dict, Tuple


def fresh_profile(plugin_zip: Path, home: Path) -> Tuple[Path, Path, Dict[str, str]]:
    """``(profile, plugins folder, environment)`` under ``home``: the environment of a user's
    machine (system PATH, no venv, offscreen Qt) pointing QGIS at the profile."""
    profile = home / "profile"
    plugins = profile / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(plugin_zip) as zf:
        zf.extractall(plugins)
    runtime = home / "runtime"
    runtime.mkdir(mode=0o700)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "QT_QPA_PLATFORM": "offscreen",
           "QGIS_CUSTOM_CONFIG_PATH": str(profile), "XDG_RUNTIME_DIR": str(runtime)}
    return profile, plugins, env
