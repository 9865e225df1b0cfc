"""Sliding-window inference and everything on its hot path.

``pipeline``  reader → network → stitcher → writer for segmentation (and the pieces change
              detection and click-to-segment reuse)
``tiling``    window grid, blending weights, the streaming stitcher
``views``     how windows are read: native or resampled to the model's GSD, normalisation
``guard``     notes before and after a run (resolution, radiometry, class shares)
``sharded``   torchrun: the window rows of each rank, rank 0 writes
``batch``     many inputs in one call (folders, lists, skip/fail policies)
"""
