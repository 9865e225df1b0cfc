"""Shared fixtures: small georeferenced rasters and model files made on the fly."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import rasterio
import torch
from hypothesis import settings
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.formats.card import default_card  # noqa: E402
from engine.formats.modelfile import save_model  # noqa: E402
from engine.models import build, register  # noqa: E402

SHARED_DATA = ROOT.parent / "shared" / "data"

# Property tests draw the same examples on every run of the suite (CI and `make test` pass or
# fail for the code, not for the draw); `pytest --hypothesis-profile explore` draws new ones,
# and an example it finds goes into the test as an @example.
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("repeatable")


class Pointwise(torch.nn.Module):
    """A 1×1-conv network: each output pixel depends on its own input pixel only, so sliding-
    window inference must reproduce the whole-image result exactly (no seams, no edge effects)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.conv(image)


register("test-pointwise", task="segmentation", description="test only",
         input_multiple=1)(lambda in_channels, num_classes: Pointwise(in_channels, num_classes))


def write_raster(path: Path, data: np.ndarray, nodata: Optional[float] = None,
                 crs: str = "EPSG:32633", origin=(500000.0, 5000000.0), res: float = 0.5,
                 photometric: Optional[str] = "MINISBLACK") -> Path:
    """Write a C×H×W array as a GeoTIFF."""
    c, h, w = data.shape
    extra = {"photometric": photometric} if photometric else {}
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=c, dtype=data.dtype,
                       crs=crs, transform=from_origin(origin[0], origin[1], res, res),
                       nodata=nodata, **extra) as dst:
        dst.write(data)
    return path


def make_model(path: Path, arch: str = "unet", bands: int = 4, classes: int = 6, seed: int = 0,
               tile: int = 64, overlap: int = 16, **hparams) -> Path:
    """A model file with random weights (seeded) and a default card."""
    card = default_card(arch, bands, classes, tile_size=tile, overlap=overlap, hparams=hparams)
    torch.manual_seed(seed)
    net = build(arch, **card["hparams"])
    # Random BatchNorm statistics make random networks give non-trivial, varied outputs.
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return save_model(path, card, net)


@pytest.fixture(autouse=True, scope="session")
def _graph_cache(tmp_path_factory: pytest.TempPathFactory):
    """onnxruntime graphs of test models go to a temporary cache, never the user's."""
    import os
    old = os.environ.get("RS_SEG_CACHE")
    os.environ["RS_SEG_CACHE"] = str(tmp_path_factory.mktemp("rs-seg-cache"))
    yield
    if old is None:
        os.environ.pop("RS_SEG_CACHE", None)
    else:
        os.environ["RS_SEG_CACHE"] = old


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def image4(tmp_path: Path, rng: np.random.Generator) -> Path:
    """A 4-band uint8 200×300 raster."""
    return write_raster(tmp_path / "image.tif", rng.integers(1, 255, (4, 200, 300), dtype=np.uint8))


@pytest.fixture
def unet_model(tmp_path: Path) -> Path:
    return make_model(tmp_path / "unet.rsmodel", base=4, depth=2)


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with the reason when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data {p} is absent (needs ../shared/data beside the checkout)")
    return p


def labelled_scene(folder: Path, size: int = 192, seed: int = 0, crs: str = "EPSG:32633"):
    """A learnable 3-band scene: class 1 background, rectangles of classes 2 and 3 with distinct
    colours plus noise.  Returns (image path, label path)."""
    rng = np.random.default_rng(seed)
    lab = np.ones((size, size), np.uint8)
    for _ in range(size // 6):
        y, x = rng.integers(0, size - 24, 2)
        h, w = rng.integers(8, 24, 2)
        lab[y:y + h, x:x + w] = rng.integers(2, 4)
    means = {1: (120, 120, 120), 2: (200, 60, 60), 3: (40, 160, 60)}
    img = np.zeros((3, size, size), np.float32)
    for c, m in means.items():
        img[:, lab == c] = np.asarray(m, np.float32)[:, None]
    img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
    image = write_raster(folder / "image.tif", img, crs=crs, res=1.0)
    labels = write_raster(folder / "labels.tif", lab[None], crs=crs, res=1.0)
    return image, labels
