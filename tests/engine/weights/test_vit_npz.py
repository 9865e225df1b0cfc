"""TransUNet's R50+ViT-B_16.npz (Google Flax layout) → SRCBTFusion-Net."""
import numpy as np
import torch

from engine.models import build
from engine.weights import load_backbone
from engine.weights.vit_npz import our_name, torch_layout

from .published import random_arrays, vit_npz_shapes


def test_every_published_array_maps_onto_the_full_model_shapes():
    """The full 12-block file against the full model (meta device: shapes only, no memory)."""
    with torch.device("meta"):
        net = build("srcbtfusion", in_channels=3, num_classes=6)
    own = net.state_dict()
    mapped = {}
    for key, shape in vit_npz_shapes().items():
        name = our_name(key)
        if name is not None:
            mapped[name] = tuple(torch_layout(key, torch.empty(shape, device="meta")).shape)
    blocks = {n for n in mapped if n.startswith("transformer.blocks.")}
    assert {n for n in blocks if int(n.split(".")[2]) >= 8} == {
        n for n in blocks if n not in own}                  # blocks 8–11: beyond vit_depth 8
    for name, shape in mapped.items():
        if name in own and name != "transformer.position_embeddings":
            assert shape == tuple(own[name].shape), name
    trunk = [k for k in own if k.startswith("trunk.")]
    assert set(trunk) <= set(mapped)                        # the whole trunk is in the file
    vit = [k for k in own if k.startswith("transformer.")]
    assert set(vit) <= set(mapped)


def test_small_file_in_the_published_layout_loads_exactly(tmp_path):
    cfg = dict(stage_units=(1, 1, 2), width=16, vit_depth=1, vit_hidden=64, vit_heads=2,
               vit_mlp=128, grid=4, dec_width=64)
    arrays = random_arrays(vit_npz_shapes(units=(1, 1, 2), width=16, blocks=2, hidden=64,
                                          heads=2, mlp=128, grid=7, classes=10))
    path = tmp_path / "R50+ViT-B_16.npz"
    np.savez(path, **arrays)
    net = build("srcbtfusion", in_channels=4, num_classes=3, **cfg)
    report = load_backbone(net, "srcbtfusion", path)
    sd = net.state_dict()
    t = torch.from_numpy
    assert torch.equal(sd["trunk.root_conv.weight"][:, :3],
                       t(arrays["conv_root/kernel"]).permute(3, 2, 0, 1))
    assert "trunk.root_conv.weight" in report.adapted                     # 3 → 4 bands
    assert torch.equal(sd["trunk.stages.2.1.gn2.bias"], t(arrays["block3/unit2/gn2/bias"]))
    assert torch.equal(sd["trunk.stages.0.0.downsample.weight"],
                       t(arrays["block1/unit1/conv_proj/kernel"]).permute(3, 2, 0, 1))
    b0 = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/"
    assert torch.equal(sd["transformer.blocks.0.attn.query.weight"],
                       t(arrays[b0 + "query/kernel"]).reshape(64, 64).t())
    assert torch.equal(sd["transformer.blocks.0.attn.out.weight"],
                       t(arrays[b0 + "out/kernel"]).reshape(64, 64).t())
    assert torch.equal(sd["transformer.blocks.0.attn.key.bias"],
                       t(arrays[b0 + "key/bias"]).reshape(-1))
    assert torch.equal(sd["transformer.blocks.0.ffn.fc2.weight"],
                       t(arrays["Transformer/encoderblock_0/MlpBlock_3/Dense_1/kernel"]).t())
    assert tuple(sd["transformer.position_embeddings"].shape) == (1, 16, 64)  # 7×7+cls → 4×4
    assert report.missing == []
    assert {"cls", "head/kernel", "pre_logits/bias"} <= set(report.unexpected)
    assert any(k.startswith("Transformer/encoderblock_1/") for k in report.unexpected)
    assert report.normalisation == "inception"
