"""Segment Anything in the engine: published layout, attention maths, prompts, predictor, the
click-to-segment function and its embedding cache."""
import numpy as np
import pytest
import rasterio
import torch
from rasterio import Affine

import engine.click.sam_click as sam_click
from engine.jobs import InputError, ModelFileError
from engine.models.sam import CONFIGS, Sam, build_sam
from engine.models.sam.image_encoder import Attention, relative_positions
from engine.models.sam.predictor import MaskResult, decode, encode
from engine.models.sam.checkpoint import load_sam, variant
from tests.conftest import write_raster
from tests.engine.weights.published import SAM_VARIANTS, random_tensors, sam_shapes


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_state_dict_is_the_published_layout(name):
    """Every name and shape of sam_vit_{b,l,h} (meta device: no memory for ViT-H)."""
    with torch.device("meta"):
        sam = Sam(CONFIGS[name])
    own = {k: tuple(v.shape) for k, v in sam.state_dict().items()}
    expected = dict(sam_shapes(*SAM_VARIANTS[name]))
    assert own == expected
    meta = {k: torch.empty(s, device="meta") for k, s in expected.items()}
    assert variant(meta).name == name


def _tiny_file(tmp_path, seed=0, drop=()):
    state = random_tensors(sam_shapes(*CONFIGS_TINY), seed=seed)
    for prefix in drop:
        state = {k: v for k, v in state.items() if not k.startswith(prefix)}
    path = tmp_path / "sam_tiny.pth"
    torch.save(state, path)
    return path, state


CONFIGS_TINY = (CONFIGS["tiny"].dim, CONFIGS["tiny"].depth, CONFIGS["tiny"].heads,
                CONFIGS["tiny"].global_blocks)


def test_load_sam_copies_every_tensor_and_refuses_partial_files(tmp_path):
    path, state = _tiny_file(tmp_path)
    sam = load_sam(path)
    own = sam.state_dict()
    assert set(own) == set(state)
    assert all(torch.equal(own[k], v) for k, v in state.items())
    enc = {k[len("image_encoder."):]: v for k, v in state.items()
           if k.startswith("image_encoder.")}
    torch.save(enc, tmp_path / "encoder_only.pth")
    with pytest.raises(ModelFileError, match="image-encoder-only"):
        load_sam(tmp_path / "encoder_only.pth")
    assert load_sam(tmp_path / "encoder_only.pth", need_decoder=False).mask_decoder is None
    torch.save({"conv1.weight": torch.zeros(1), "bn1.weight": torch.zeros(1),
                "layer1.0.conv1.weight": torch.zeros(1)}, tmp_path / "r.pth")
    with pytest.raises(ModelFileError, match="not a Segment Anything"):
        load_sam(tmp_path / "r.pth")


def test_attention_is_softmax_of_scaled_product_plus_decomposed_positions():
    torch.manual_seed(0)
    att = Attention(16, 2, (5, 5)).eval()
    with torch.no_grad():
        att.rel_pos_h.normal_()
        att.rel_pos_w.normal_()
    x = torch.randn(1, 5, 5, 16)
    qkv = att.qkv(x).reshape(1, 25, 3, 2, 8).permute(2, 0, 3, 1, 4).reshape(3, 2, 25, 8)
    q, k, v = qkv
    logits = (q * 8 ** -0.5) @ k.transpose(-2, -1)
    ys, xs = torch.meshgrid(torch.arange(5), torch.arange(5), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    rh = att.rel_pos_h[(ys[:, None] - ys[None, :]) + 4]          # query row − key row
    rw = att.rel_pos_w[(xs[:, None] - xs[None, :]) + 4]
    logits = logits + torch.einsum("hqc,qkc->hqk", q, rh) + torch.einsum("hqc,qkc->hqk", q, rw)
    expected = (logits.softmax(-1) @ v).reshape(1, 2, 5, 5, 8).permute(0, 2, 3, 1, 4)
    expected = att.proj(expected.reshape(1, 5, 5, 16))
    assert torch.allclose(att(x), expected, atol=1e-5)
    table = torch.arange(9.0)[:, None]
    assert relative_positions(5, 5, table)[0, 4].item() == 0.0   # offset −4 is the first row


def test_predictor_prompts_and_best_mask():
    sam = build_sam("tiny", img_size=256, seed=1)
    rgb = np.random.default_rng(0).integers(0, 255, (3, 100, 60), dtype=np.uint8)
    emb = encode(sam, rgb, torch.device("cpu"))
    assert emb.features.shape == (1, 256, 16, 16) and emb.resized == (256, 154)
    res = decode(sam, emb, np.array([[30.0, 50.0]]), np.array([1]))
    assert res.mask.shape == (100, 60) and len(res.scores) == 3
    assert res.score == max(res.scores)
    single = decode(sam, emb, np.array([[30.0, 50.0], [5, 5]]), np.array([1, 0]),
                    multimask=False)
    assert len(single.scores) == 1
    boxed = decode(sam, emb, None, None, box=(10, 10, 40, 80))
    assert boxed.mask.shape == (100, 60)
    with pytest.raises(ValueError):
        decode(sam, emb)


def _constant_positive(sam):
    """Weights that make every mask logit positive (the whole window is the object)."""
    with torch.no_grad():
        up = sam.mask_decoder.output_upscaling[3]
        up.weight.zero_()
        up.bias.fill_(1.0)
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[2].weight.zero_()
            mlp.layers[2].bias.fill_(1.0)
    return sam


def test_sam_segment_at_caches_the_window_and_maps_the_mask(tmp_path, monkeypatch):
    path, _ = _tiny_file(tmp_path)
    img = np.random.default_rng(0).integers(0, 255, (3, 96, 128)).astype(np.uint16) * 40
    raster = write_raster(tmp_path / "img.tif", img, crs="EPSG:32633", res=0.5)
    with rasterio.open(raster) as ds:
        x0, y0 = ds.transform * (0, 0)
    session = sam_click.SamSession()
    sam = _constant_positive(session.model(path, torch.device("cpu")))
    assert sam is session.model(path, torch.device("cpu"))              # loaded once
    first = sam_click.sam_segment_at(raster, x0 + 20.25, y0 - 10.25, path, window=128,
                                     session=session, device="cpu")
    assert not first["cached"] and first["geometry"].area == pytest.approx(64 * 48)
    assert first["area_m2"] == pytest.approx(64 * 48) and first["window"] == (0, 0, 128, 96)
    assert not first["truncated"]
    # a square mask at window pixels 10..19 × 30..39 → the polygon lies there on the map
    square = np.zeros((96, 128), bool)
    square[30:40, 10:20] = True
    monkeypatch.setattr(session, "decoder", lambda *a: None)  # the torch decode, stubbed
    monkeypatch.setattr(sam_click, "decode", lambda *a, **k: MaskResult(square, 0.9, [0.9]))
    second = sam_click.sam_segment_at(raster, x0 + 7.5, y0 - 17.5, path, window=128,
                                      session=session, device="cpu", box=(x0, y0 - 30, x0 + 20, y0))
    assert second["cached"]
    minx, miny, maxx, maxy = second["geometry"].bounds
    assert (minx, maxy, maxx, miny) == pytest.approx((x0 + 5, y0 - 15, x0 + 10, y0 - 20))
    with pytest.raises(InputError, match="outside"):
        sam_click.sam_segment_at(raster, x0 - 5, y0, path, session=session, device="cpu")
    monkeypatch.setattr(sam_click, "decode",
                        lambda *a, **k: MaskResult(np.zeros((96, 128), bool), 0.1, [0.1]))
    with pytest.raises(InputError, match="no object"):
        sam_click.sam_segment_at(raster, x0 + 7.5, y0 - 17.5, path, window=128,
                                 session=session, device="cpu")


def test_stretch_of_non_8bit_bands():
    px = np.stack([np.linspace(0, 1000, 100).reshape(10, 10)] * 2).astype(np.float32)
    valid = np.ones((10, 10), bool)
    rgb = sam_click.to_rgb8(px, valid)
    assert rgb.shape == (3, 10, 10) and rgb.dtype == np.uint8
    assert rgb.min() == 0 and rgb.max() == 255


def test_the_clicked_part_with_small_holes_filled():
    mask = np.zeros((40, 40), bool)
    mask[5:25, 5:25] = True
    mask[10, 10] = False                                      # a 1-pixel hole: noise
    mask[14:22, 14:22] = False                                # a 64-pixel hole: kept
    mask[30:35, 30:35] = True                                 # another part
    part = sam_click._part(mask, (6.0, 6.0))
    assert part.area == 20 * 20 - 64 and len(part.interiors) == 1
    assert sam_click._part(mask, (32.0, 32.0)).area == 25
    assert sam_click._part(mask, (0.5, 39.5)).area == 20 * 20 - 64      # off the mask: largest


@pytest.mark.parametrize("transform", [Affine(0.5, 0, 100, 0, -0.5, 200),   # north up
                                       Affine(2.0, 0, 0, 0, 2.0, 0)])        # y down
def test_the_map_polygon_is_shapelys_oriented_transform(transform):
    from shapely.affinity import affine_transform
    from shapely.geometry.polygon import orient
    mask = np.zeros((40, 40), bool)
    mask[5:25, 5:25] = True
    mask[14:22, 14:22] = False
    part = sam_click._part(mask, (6.0, 6.0))
    got = sam_click._to_map(part, transform)
    matrix = [transform.a, transform.b, transform.d, transform.e, transform.xoff, transform.yoff]
    want = orient(affine_transform(part, matrix), 1.0)
    assert got.equals(want) and got.exterior.is_ccw and not got.interiors[0].is_ccw
    assert list(got.exterior.coords) == list(want.exterior.coords)
