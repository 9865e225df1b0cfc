"""SAM's prompt encoder + mask decoder through onnxruntime: the torch decode's masks and scores,
a graph exported once per checkpoint, and the hover path that never encodes."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

import engine.click.sam_click as sam_click
from engine.click.sam_onnx import OnnxSamDecoder, onnx_decoder, prompts
from engine.formats.onnx.runtime_graph import cache_dir
from engine.models.sam import build_sam
from engine.models.sam.predictor import Embedding, decode, encode
from tests.conftest import write_raster
from tests.engine.models.test_sam import _constant_positive


@pytest.fixture(scope="module")
def tiny():
    sam = build_sam("tiny", img_size=256, seed=3)
    rgb = np.random.default_rng(1).integers(0, 255, (3, 200, 160), dtype=np.uint8)
    return sam, encode(sam, rgb, torch.device("cpu"))


@pytest.mark.parametrize("prompt", [
    {"points": np.array([[50.0, 70.0]]), "labels": np.array([1])},
    {"points": np.array([[50.0, 70.0], [120.0, 20.0]]), "labels": np.array([1, 0])},
    {"box": (10.0, 20.0, 90.0, 150.0)},
    {"points": np.array([[50.0, 70.0]]), "labels": np.array([1]), "box": (10, 20, 90, 150)},
])
@pytest.mark.parametrize("multimask", [True, False])
def test_onnxruntime_decode_is_the_torch_decode(tiny, prompt, multimask):
    sam, emb = tiny
    want = decode(sam, emb, multimask=multimask, **prompt)
    got = OnnxSamDecoder(sam).decode(emb, multimask=multimask, **prompt)
    assert np.abs(np.array(got.scores) - np.array(want.scores)).max() <= 1e-4
    assert got.mask.shape == want.mask.shape == (200, 160)
    assert np.mean(got.mask == want.mask) >= 0.999


def test_the_graph_is_exported_once_per_checkpoint(tiny):
    sam, emb = tiny
    first = OnnxSamDecoder(sam)
    assert first.path.parent == cache_dir() and first.path.is_file()
    stamp = first.path.stat().st_mtime_ns
    assert OnnxSamDecoder(sam).path.stat().st_mtime_ns == stamp
    for other in (build_sam("tiny", img_size=256, seed=4), build_sam("tiny", seed=3)):
        assert OnnxSamDecoder(other).path != first.path  # other weights, other model frame
    assert onnx_decoder(sam, torch.device("cuda")) is None  # a GPU keeps the torch decode


def test_prompts_pad_points_and_scale_to_the_model_frame():
    emb = Embedding(torch.zeros(1), torch.zeros(1), (200, 100), (256, 128))
    coords, labels = prompts(emb, np.array([[10.0, 20.0]]), np.array([1]), None)
    assert labels.tolist() == [[1.0, -1.0]]
    assert coords[0, 0].tolist() == pytest.approx([12.8, 25.6])
    coords, labels = prompts(emb, None, None, (0, 0, 100, 200))
    assert labels.tolist() == [[2.0, 3.0]] and coords[0, 1].tolist() == pytest.approx([128, 256])
    with pytest.raises(ValueError):
        prompts(emb, None, None, None)


def _click_on(tmp_path, monkeypatch, sam):
    """A session serving ``sam`` and the arguments of a click on a 128×96 raster."""
    session = sam_click.SamSession()
    monkeypatch.setattr(session, "model", lambda weights, device: sam)
    img = np.random.default_rng(0).integers(0, 255, (3, 96, 128), dtype=np.uint8)
    raster = write_raster(tmp_path / "img.tif", img)
    with rasterio.open(raster) as ds:
        x0, y0 = ds.transform * (0, 0)
    return session, (raster, x0 + 20.25, y0 - 10.25, tmp_path / "sam.pth")


def test_hover_decodes_only_windows_already_encoded(tmp_path, monkeypatch):
    sam = build_sam("tiny", seed=3)
    session, args = _click_on(tmp_path, monkeypatch, sam)
    assert sam_click.sam_segment_at(*args, window=128, session=session, device="cpu",
                                    cached_only=True) is None
    assert len(session.embeddings) == 0
    try:
        sam_click.sam_segment_at(*args, window=128, session=session, device="cpu")
    except sam_click.InputError:  # a random network may find no object; the window is encoded
        pass
    assert len(session.embeddings) == 1
    assert isinstance(session.decoder(sam, torch.device("cpu")), OnnxSamDecoder)


def test_a_coarser_preview_outlines_the_same_object(tmp_path, monkeypatch):
    sam = _constant_positive(build_sam("tiny", seed=3))  # the whole window is the object
    session, args = _click_on(tmp_path, monkeypatch, sam)
    full = sam_click.sam_segment_at(*args, window=128, session=session, device="cpu")
    coarse = sam_click.sam_segment_at(*args, window=128, session=session, device="cpu",
                                      cached_only=True, preview=4)
    assert coarse["cached"] and coarse["geometry"].equals(full["geometry"])
    assert coarse["area_m2"] == pytest.approx(full["area_m2"])


def test_a_preview_on_the_same_pixel_reuses_the_outline_and_opens_nothing(tmp_path, monkeypatch):
    sam = _constant_positive(build_sam("tiny", seed=3))
    session, (raster, x, y, weights) = _click_on(tmp_path, monkeypatch, sam)
    sam_click.sam_segment_at(raster, x, y, weights, window=128, session=session, device="cpu")
    decoder = session.decoder(sam, torch.device("cpu"))
    decodes = []
    real = decoder.decode
    monkeypatch.setattr(decoder, "decode", lambda *a, **k: decodes.append(a) or real(*a, **k))
    monkeypatch.setattr(sam_click, "open_raster",
                        lambda path: pytest.fail("a hover over an encoded window opened the file"))

    def hover(dx: float):
        return sam_click.sam_segment_at(raster, x + dx, y, weights, window=128, session=session,
                                        device="cpu", cached_only=True, preview=4)
    first = hover(0.0)
    assert len(decodes) == 1
    same_pixel = hover(0.5)        # 1 raster pixel (0.5 m) right: the same 1/4-resolution pixel
    assert len(decodes) == 1 and same_pixel["geometry"].equals(first["geometry"])
    hover(2.0)                     # 4 raster pixels right: the next preview pixel
    assert len(decodes) == 2
    full = sam_click.sam_segment_at(raster, x + 0.5, y, weights, window=128, session=session,
                                    device="cpu")
    assert len(decodes) == 3 and full["cached"]  # a click always decodes its own point
