"""What runs on results: change detection (``change``), structure rasters (``derive``),
polygons (``vectorize``), accuracy reports (``evaluation``) and their metrics (``metrics``)."""
