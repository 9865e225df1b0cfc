"""``engine.training.pretrain``: GLCNet self-supervised pre-training on unlabelled rasters.

Li et al., IEEE TGRS 60 (2022) — "global style and local matching contrastive learning" — built
from ``docs/seed-models.md`` §3 (no seed code used).  The result is a model file with
``task: "pretrained"`` (no classes) that only serves ``train --arch ARCH --init FILE``.

The pieces: :mod:`.views` (two views with tracked correspondence, matched RoIs),
:mod:`.dataset` (unlabelled windows as pairs of views), :mod:`.losses` (NT-Xent and the two
projection heads), :mod:`.loop` (the stage: loop, checkpoint, model file) and :mod:`.cli`
(``python -m engine pretrain``).  The notes below hold for all of them.

Per sample: a random window of one of the rasters (``window`` px, nodata-heavy windows skipped)
gets an index map holding each source pixel's flat index (−1 where invalid).  Two views are cut
from it (random-resized crop, scale 0.4–1, aspect 3/4–4/3, resized to ``crop``²: pixels bilinear,
index map nearest); view 2 is also flipped / rotated by 90° (the index map follows) and
photometrically jittered.  ``patch_num`` source pixels present in both views, at least
``patch_size/2`` from the view borders and (when possible) with non-overlapping patches, give the
matched RoIs.

The network (any registered segmentation network with ``ssl_features(image) -> (deep, map)``:
``glcnet`` or ``unet``) is built with ``num_classes = embedding`` (64): its output map is the
per-pixel embedding.  Two projection heads that are *not* saved with the network:

* global style: [channel mean, channel variance] of ``deep`` (2C) → MLP 2C→C→ReLU→64 → NT-Xent
  over the batch (positive: the other view of the same window);
* local matching: RoI max-pool (torchvision ``RoIPool`` semantics, scale 1, output
  ``patch_size``²) of the embedding maps at the matched boxes → spatial mean → MLP K→K→ReLU→64 →
  NT-Xent over all local vectors of the batch (positive: the same source pixel in the other view).

Loss = λ·global + (1−λ)·local (λ = 0.5, τ = 0.5).  Adam (β 0.9, 0.99, weight decay 1e-5) with a
per-step cosine decay to 4e-8; ``<out>.last.ckpt`` after every epoch (atomic, ``weights_only``
loadable) and exact ``resume``; the model file holds the network of the epoch with the lowest
mean loss (as the seed keeps its best-loss checkpoint); DistributedDataParallel under
``torchrun`` (rank 0 writes; NT-Xent negatives are those of the rank's own batch).

Readings where the specification is silent or loose (also in the report of the work):

* Photometric jitter works on normalised values (z-scores, any dtype): the seed's OpenCV HSV
  shift of the first three bands (hue ±30 of 180, sat ±5, value ±15 of 255) becomes a rotation of
  the three bands about their grey axis by ±60°, a chroma scaling ±5 % and a value offset ±0.3;
  the other bands (all bands when there are fewer than three) get brightness/contrast ±0.1 and
  salt noise (p = 0.001, set to the band's window maximum).
* NT-Xent is SimCLR's: for each of the 2N vectors, cross-entropy of its positive against every
  other vector (the positive is in the denominator as in SimCLR); masks are built per call, so
  any batch size works (``drop_last`` is not needed; a batch of one gives 0 loss).
* Both views go through the network as one batch of 2B (BatchNorm sees both views).
* A RoI box of ``patch_size`` centred on a matched pixel spans ``patch_size + 1`` pixels
  (inclusive corners, as RoIPool rounds them); "non-overlapping" means those boxes are disjoint
  in both views; when fewer than ``patch_num`` disjoint boxes exist, the rest are drawn from all
  matched pixels (overlap allowed), and when none exist the two views are drawn again.
* The source window defaults to ``crop × 8/7`` (the seed's 256 → 224); ``samples_per_epoch``
  defaults to the number of non-overlapping windows in the rasters.
"""
from .cli import COMMAND, HELP, add_arguments, run
from .dataset import TwoViewDataset
from .losses import GLCObjective, nt_xent, roi_max_pool, style_vector
from .loop import pretrain
from .views import match_patches, photometric, two_views

__all__ = ["COMMAND", "GLCObjective", "HELP", "TwoViewDataset", "add_arguments", "match_patches",
           "nt_xent", "photometric", "pretrain", "roi_max_pool", "run", "style_vector",
           "two_views"]
