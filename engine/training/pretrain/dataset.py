"""The unlabelled-window dataset: random windows of the rasters as matched pairs of views."""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from ...jobs import InputError
from .views import match_patches, two_views

MIN_VALID = 0.5                  # windows with fewer valid pixels are skipped (redrawn)


class TwoViewDataset(torch.utils.data.Dataset):
    """Random windows of the rasters as pairs of views with matched RoI centres.

    Every draw comes from a generator seeded by (seed, epoch, index): epochs are reproducible
    and resume is exact.  Items: ``v1``, ``v2`` (C×crop×crop), ``c1``, ``c2`` (patch_num×2).
    """

    def __init__(self, images: Sequence[str], window: int, crop: int,
                 stats: Tuple[List[float], List[float]], patch_size: int, patch_num: int,
                 length: int, seed: int = 0) -> None:
        self.images, self.window, self.crop = list(images), window, crop
        self.mean = np.asarray(stats[0], np.float32)[:, None, None]
        self.std = np.asarray(stats[1], np.float32)[:, None, None]
        self.patch_size, self.patch_num = patch_size, patch_num
        self.length, self.seed, self.epoch = length, seed, 0
        self._readers = None
        self.sizes = []
        from ...io.rasters import open_raster
        for path in self.images:
            with open_raster(path) as ds:
                self.sizes.append((ds.width, ds.height))
        area = np.array([(w - window + 1) * (h - window + 1) for w, h in self.sizes], float)
        self.weights = area / area.sum()

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Draw the windows of ``epoch`` from now on."""
        self.epoch = epoch

    def _reader(self, i: int):
        if self._readers is None:  # opened lazily: each DataLoader worker gets its own handles
            from ...io.rasters import WindowReader, data_band_indexes, open_raster
            self._readers = []
            for path in self.images:
                ds = open_raster(path)
                self._readers.append(WindowReader(ds, data_band_indexes(ds) or [1]))
        return self._readers[i]

    def close(self) -> None:
        """Close the rasters this process opened."""
        for r in self._readers or []:
            r.ds.close()
        self._readers = None

    def read_window(self, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        """A normalised window (invalid pixels 0) and its index map (−1 where invalid)."""
        best = None
        for _ in range(20):
            s = int(rng.choice(len(self.images), p=self.weights))
            w, h = self.sizes[s]
            x = int(rng.integers(0, w - self.window + 1))
            y = int(rng.integers(0, h - self.window + 1))
            win = self._reader(s).read(x, y, self.window)
            frac = float(win.valid.mean())
            if best is None or frac > best[0]:
                best = (frac, win)
            if frac >= MIN_VALID:
                break
        win = best[1]
        pixels = (win.pixels - self.mean) / self.std * win.valid[None]
        index = np.arange(self.window * self.window, dtype=np.int64).reshape(self.window,
                                                                            self.window)
        index[~win.valid] = -1
        return pixels.astype(np.float32), index

    def __getitem__(self, i: int) -> Dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        for attempt in range(40):
            if attempt % 4 == 0:
                pixels, index = self.read_window(rng)
            v1, v2, i1, i2 = two_views(pixels, index, self.crop, rng)
            found = match_patches(i1, i2, self.patch_size, self.patch_num, rng)
            if found is not None:
                break
        else:
            raise InputError(f"could not find a pixel seen by both views away from their borders "
                             f"in 40 tries (crop {self.crop}, patch size {self.patch_size}); "
                             f"lower --patch-size or check the images' nodata")
        return {"v1": torch.from_numpy(v1), "v2": torch.from_numpy(v2),
                "c1": torch.from_numpy(found[0]), "c2": torch.from_numpy(found[1])}
