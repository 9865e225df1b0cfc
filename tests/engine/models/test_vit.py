"""DINOv2-layout ViT: state-dict layout, strict local loading, frozen behaviour, feature cache."""
from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from engine.jobs import InputError
from engine.models import vit as V


def dinov2_layout(dim: int, depth: int, registers: int, grid: int, swiglu_hidden: int = 0,
                  mlp_hidden: int = 0) -> dict:
    """The DINOv2 checkpoint layout, written out independently of engine.models.vit."""
    shapes = {"cls_token": (1, 1, dim), "pos_embed": (1, 1 + grid * grid, dim),
              "mask_token": (1, dim), "patch_embed.proj.weight": (dim, 3, 14, 14),
              "patch_embed.proj.bias": (dim,), "norm.weight": (dim,), "norm.bias": (dim,)}
    if registers:
        shapes["register_tokens"] = (1, registers, dim)
    for i in range(depth):
        b = f"blocks.{i}."
        shapes.update({b + "norm1.weight": (dim,), b + "norm1.bias": (dim,),
                       b + "attn.qkv.weight": (3 * dim, dim), b + "attn.qkv.bias": (3 * dim,),
                       b + "attn.proj.weight": (dim, dim), b + "attn.proj.bias": (dim,),
                       b + "ls1.gamma": (dim,), b + "norm2.weight": (dim,),
                       b + "norm2.bias": (dim,), b + "ls2.gamma": (dim,)})
        if swiglu_hidden:
            shapes.update({b + "mlp.w12.weight": (2 * swiglu_hidden, dim),
                           b + "mlp.w12.bias": (2 * swiglu_hidden,),
                           b + "mlp.w3.weight": (dim, swiglu_hidden), b + "mlp.w3.bias": (dim,)})
        else:
            shapes.update({b + "mlp.fc1.weight": (mlp_hidden, dim),
                           b + "mlp.fc1.bias": (mlp_hidden,),
                           b + "mlp.fc2.weight": (dim, mlp_hidden), b + "mlp.fc2.bias": (dim,)})
    return shapes


def random_state(shapes: dict, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) * 0.05 for k, s in shapes.items()}


TINY_REG = dinov2_layout(64, 2, 4, 4, mlp_hidden=256)


def test_vitb14_layout_matches_the_public_checkpoint():
    shapes = V.expected_shapes("vitb14")
    assert shapes["pos_embed"] == (1, 1370, 768)
    assert shapes["cls_token"] == (1, 1, 768)
    assert shapes["mask_token"] == (1, 768)
    assert shapes["patch_embed.proj.weight"] == (768, 3, 14, 14)
    assert shapes["blocks.0.attn.qkv.weight"] == (2304, 768)
    assert shapes["blocks.11.mlp.fc1.weight"] == (3072, 768)
    assert shapes["blocks.11.ls2.gamma"] == (768,)
    assert "blocks.12.norm1.weight" not in shapes
    assert len({k.split(".")[1] for k in shapes if k.startswith("blocks.")}) == 12
    assert "register_tokens" not in shapes
    assert dict(shapes) == dinov2_layout(768, 12, 0, 37, mlp_hidden=3072)
    assert V.expected_shapes("vitb14_reg")["register_tokens"] == (1, 4, 768)
    assert V.parameter_count("vitb14") == 86_580_480


def test_other_public_layouts():
    assert dict(V.expected_shapes("vits14_reg")) == dinov2_layout(384, 12, 4, 37, mlp_hidden=1536)
    assert dict(V.expected_shapes("vitl14")) == dinov2_layout(1024, 24, 0, 37, mlp_hidden=4096)
    g = V.expected_shapes("vitg14_reg")
    assert dict(g) == dinov2_layout(1536, 40, 4, 37, swiglu_hidden=4096)
    assert g["blocks.39.mlp.w12.weight"] == (8192, 1536)
    assert g["blocks.39.mlp.w3.weight"] == (1536, 4096)
    assert V.parameter_count("vits14") == 22_056_576
    assert V.parameter_count("vitl14") == 304_368_640
    assert V.parameter_count("vitg14") == 1_136_480_768
    assert V.vit_config("dinov2_vitb14_reg").name == "vitb14_reg"
    with pytest.raises(InputError, match="unknown foundation ViT"):
        V.vit_config("vitx99")


def test_module_state_dict_equals_the_layout():
    for name in ("tiny", "tiny_reg"):
        sd = V.ViT(name).state_dict()
        assert [(k, tuple(v.shape)) for k, v in sd.items()] == list(V.expected_shapes(name).items())
    assert dict(V.expected_shapes("tiny_reg")) == TINY_REG


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_dinov2_layout_file_loads_strictly(tmp_path, suffix):
    state = random_state(TINY_REG)
    path = tmp_path / f"dinov2_tiny_reg{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    frozen = V.load_foundation(path, "tiny_reg")
    loaded = frozen.vit.state_dict()
    assert set(loaded) == set(state)
    for k, v in state.items():
        assert torch.equal(loaded[k], v), k
    maps = frozen(torch.randn(2, 3, 70, 84))
    assert len(maps) == 1 and maps[0].shape == (2, 64, 5, 6)
    assert torch.isfinite(maps[0]).all()
    assert frozen.source == str(path) and frozen.fingerprint.startswith("sha256")


def test_wrong_keys_give_a_clear_error(tmp_path):
    state = random_state(TINY_REG)
    state["blocks.0.attn.qkv_renamed.weight"] = state.pop("blocks.0.attn.qkv.weight")
    del state["norm.bias"]
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(InputError) as err:
        V.load_foundation(path, "tiny_reg")
    msg = str(err.value)
    assert "missing 2 key(s)" in msg and "blocks.0.attn.qkv.weight" in msg and "norm.bias" in msg
    assert "unexpected 1 key(s): blocks.0.attn.qkv_renamed.weight" in msg


def test_wrong_variant_is_named(tmp_path):
    path = tmp_path / "no_registers.pth"
    torch.save(random_state(dinov2_layout(64, 2, 0, 4, mlp_hidden=256)), path)
    with pytest.raises(InputError, match="missing 1 key.*register_tokens.*looks like 'tiny'"):
        V.load_foundation(path, "tiny_reg")
    assert V.load_foundation(path, "tiny").vit.register_tokens is None


def test_wrapped_and_chunked_checkpoints_are_unwrapped(tmp_path):
    state = random_state(TINY_REG)
    chunked = {(f"backbone.blocks.0.{k[len('blocks.'):]}" if k.startswith("blocks.")
                else f"backbone.{k}"): v for k, v in state.items()}
    path = tmp_path / "teacher.pth"
    torch.save({"teacher": chunked}, path)
    frozen = V.load_foundation(path, "tiny_reg")
    assert torch.equal(frozen.vit.blocks[1].attn.qkv.weight, state["blocks.1.attn.qkv.weight"])


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_missing_or_unsafe_files_are_refused(tmp_path):
    with pytest.raises(InputError, match="do not exist.*nothing is downloaded"):
        V.load_foundation(tmp_path / "absent.pth", "tiny")
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"cls_token": Payload()}))
    with pytest.raises(InputError, match="not a readable weights file"):
        V.load_foundation(evil, "tiny")
    assert not marker.exists()


def test_frozen_vit_never_trains():
    frozen = V.random_foundation("tiny_reg", seed=3)
    assert all(not p.requires_grad for p in frozen.parameters())
    frozen.train()
    assert not frozen.training and not any(m.training for m in frozen.modules())
    x = torch.randn(1, 3, 56, 56, requires_grad=True)
    out = frozen(x)[0]
    assert out.grad_fn is None
    again = V.random_foundation("tiny_reg", seed=3)
    assert torch.equal(out, again(x)[0])           # deterministic from the seed
    state = torch.get_rng_state()
    V.random_foundation("tiny", seed=5)
    assert torch.equal(state, torch.get_rng_state())  # global RNG untouched


def test_layers_and_position_interpolation():
    vit = V.build_vit("tiny_reg", seed=0).eval()
    x = torch.randn(1, 3, 56, 56)
    first, last = vit.forward_layers(x, [0, -1])
    assert first.shape == last.shape == (1, 64, 4, 4)
    assert torch.equal(last, vit(x))
    assert vit.position_table(4, 4) is vit.pos_embed
    table = vit.position_table(6, 3)
    assert table.shape == (1, 1 + 18, 64)
    assert torch.equal(table[:, 0], vit.pos_embed[:, 0])
    plain = V.build_vit("tiny", seed=0)     # DINOv2's 0.1 offset without antialiasing
    assert plain.position_table(5, 7).shape == (1, 36, 64)
    with pytest.raises(ValueError, match="multiples of 14"):
        vit(torch.randn(1, 3, 50, 56))
    assert V.to_patch_multiple(torch.randn(1, 3, 512, 500)).shape[-2:] == (518, 504)


def test_feature_cache_reuses_and_limits_size(tmp_path):
    frozen = V.random_foundation("tiny", seed=0)
    frozen.cache = V.FeatureCache(tmp_path / "cache", max_bytes=3 * 4200)
    calls = []
    original = frozen.vit.forward_layers

    def counting(x, layers):
        calls.append(x.shape[0])
        return original(x, layers)

    frozen.vit.forward_layers = counting
    x = torch.randn(2, 3, 56, 56)
    a = frozen(x, positions=[(0, 0), (0, 56)])[0]
    b = frozen(x, positions=[(0, 0), (0, 56)])[0]
    assert calls == [2] and torch.equal(a, b)
    frozen(x, positions=[(1, 0), (1, 56)])      # other windows: computed, cache evicts old files
    assert calls == [2, 2]
    assert frozen.cache.size_bytes <= 3 * 4200
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) <= 3
