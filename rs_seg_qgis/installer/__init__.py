"""Dependency installer: torch / onnxruntime into a plugin-private folder under the QGIS profile.

``choices`` (what can be installed), ``folder`` (the private folder: health, atomic swap,
sys.path), ``pip`` (which python, the pip commands, progress, cancel), ``install`` (one install
from resolve to swap) import no QGIS, so they run from any Python; ``task`` is the QgsTask.
"""
