"""Desktop GUI of RS Seg: the dock (Segment, Compare dates, Train, Models), the click-to-segment
map tool, the model manager and the diagnostics dialog.  Widgets only collect choices; the
parameter logic lives in :mod:`.params`, the runs in :mod:`rs_seg_qgis.tasks`."""
