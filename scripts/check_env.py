"""Fail setup if pip shadowed Debian's GIS stack (PyPI rasterio/shapely/numpy break inside QGIS)."""
import sys

import numpy
import rasterio
import shapely
import torch

DEBIAN = "/usr/lib/python3/dist-packages"
problems = [f"{m.__name__} {m.__version__} comes from {m.__file__}, not Debian's {DEBIAN}"
            for m in (numpy, rasterio, shapely) if not m.__file__.startswith(DEBIAN)]
if int(numpy.__version__.split(".")[0]) >= 2:
    problems.append(f"numpy {numpy.__version__} >= 2 breaks GDAL's Python bindings")
if not torch.__version__.startswith("2.13.0"):
    problems.append(f"torch {torch.__version__} installed; the project pins torch==2.13.0")
if problems:
    sys.exit("environment check failed:\n  " + "\n  ".join(problems) +
             "\nfix: rm -rf .venv && make setup")
print(f"environment ok: numpy {numpy.__version__}, rasterio {rasterio.__version__} "
      f"(GDAL {rasterio.__gdal_version__}), shapely {shapely.__version__}, torch {torch.__version__}")
