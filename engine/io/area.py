"""Ground area (and perimeter) of polygons in map coordinates, in square metres (metres).

Projected CRSs: CRS units converted with the CRS's linear unit factor.  Geographic CRSs: geodesic
area on the CRS's ellipsoid (``pyproj.Geod``).  No CRS: square CRS/pixel units.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any

from shapely.geometry import Polygon


class AreaMeter:
    """Area in m² of a polygon in map coordinates (units: see the module docstring)."""

    def __init__(self, crs: Any) -> None:
        self.geod = None
        self.factor = 1.0
        if crs is None:
            return
        if crs.is_geographic:
            from osgeo import osr
            srs = osr.SpatialReference()
            srs.ImportFromWkt(crs.to_wkt())
            a, rf = srs.GetSemiMajor(), srs.GetInvFlattening()
            if not os.environ.get("PROJ_DATA") and not os.environ.get("PROJ_LIB") \
                    and os.path.isdir("/usr/share/proj"):
                os.environ["PROJ_DATA"] = "/usr/share/proj"  # quiets pyproj's import warning
            from pyproj import Geod
            self.geod = Geod(a=a, rf=rf) if rf else Geod(a=a, b=a)
        else:
            with contextlib.suppress(Exception):
                self.factor = float(crs.linear_units_factor[1])

    def __call__(self, geom: Polygon) -> float:
        if self.geod is not None:
            area, _ = self.geod.geometry_area_perimeter(geom)
            return abs(float(area))
        return float(geom.area) * self.factor ** 2

    def perimeter(self, geom: Polygon) -> float:
        """Length of all rings of a polygon in map coordinates, in metres (same units)."""
        if self.geod is not None:
            _, length = self.geod.geometry_area_perimeter(geom)
            return abs(float(length))
        return float(geom.length) * self.factor

    def exact(self, pixel_geom: Polygon, map_geom: Polygon, pixel_area: float) -> float:
        """Area of an unsimplified polygon: exact pixel count × pixel area when projected."""
        if self.geod is not None:
            return self(map_geom)
        return float(pixel_geom.area) * pixel_area * self.factor ** 2
