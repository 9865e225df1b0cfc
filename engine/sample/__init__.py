"""A synthetic, georeferenced two-date sample scene for trying the engine without real data.

``make_sample`` writes a small town at 0.5 m (R, G, B, NIR images of two dates, a DSM, per-date
class labels and a building-change mask).  Every pixel is a pure function of its global
coordinates and the seed: the plane is cut into 64 px cells ("parcels") grouped into 4×4-cell
street blocks; each cell's content (building, parking, park, clutter lot, open grass, trees,
cars, clutter patches, demolition or new construction) is decided by an integer hash of
``(seed, cell_x, cell_y)``, and textures are value noise on hashed lattices.  The scene is rendered
and written window by window (256-row strips, 2048-column chunks), so memory does not grow with
the size and strip boundaries leave no seams.

``hashing``  seeded integer hashes and value noise (the only source of randomness)
``layout``   the class map and each cell's objects: roads, buildings, trees, clutter, cars
``render``   a window of the layout → t1/t2 images, DSM, labels of both dates, change mask
``write``    ``make_sample``: the GeoTIFFs, their metadata, strip-by-strip streaming
"""
from __future__ import annotations

from .layout import CLASSES
from .render import BANDS
# the strip knobs are re-exported for reading only: make_sample uses write's own module globals
from .write import (CHUNK_COLS, CRS, GSD_M, MIN_SIZE, ORIGIN, OUTPUTS, STRIP_ROWS,
                    make_sample)

__all__ = ["BANDS", "CHUNK_COLS", "CLASSES", "CRS", "GSD_M", "MIN_SIZE", "ORIGIN", "OUTPUTS",
           "STRIP_ROWS", "make_sample"]
