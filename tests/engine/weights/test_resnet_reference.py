"""The engine's ResNet-50 encoders compute what torchvision's published ResNet-50 computes.

torchvision's wheel for torch 2.13 (0.28.0) ships compiled operators built against CUDA torch,
so ``import torchvision`` fails beside the CPU build.  Its model definition is plain Python,
though: ``torchvision/models/resnet.py`` is read from the pinned wheel that ``make test``
downloads into build/reference/ and run with its registry/metadata imports stubbed (none of them
take part in the network).  A torchvision ResNet-50 with random weights is saved as a published
checkpoint, loaded through ``--backbone-weights`` (engine.weights) into each encoder that takes
torchvision's layout, and both networks see the same image.
"""
from __future__ import annotations

import enum
import sys
import types
import zipfile
from pathlib import Path

import pytest
import torch

from engine.models import build
from engine.weights import load_backbone

WHEEL_GLOB = "torchvision-0.28.0-*.whl"
REFERENCE = Path(__file__).resolve().parents[3] / "build" / "reference"


def _stub(name: str, **attrs: object) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def _identity_decorator(*_args: object, **_kwargs: object):
    return lambda fn: fn


class _WeightsEnum(enum.Enum):
    """The weights registry, reduced to what ``weights=None`` asks of it."""

    @classmethod
    def verify(cls, obj: object) -> object:
        return obj


@pytest.fixture(scope="module")
def torchvision_resnet() -> types.ModuleType:
    """torchvision 0.28.0's ``models/resnet.py``, executed as a module of its own."""
    wheels = sorted(REFERENCE.glob(WHEEL_GLOB))
    if not wheels:
        pytest.skip(f"torchvision 0.28.0 wheel not in {REFERENCE} (make test downloads it)")
    with zipfile.ZipFile(wheels[0]) as zf:
        source = zf.read("torchvision/models/resnet.py").decode("utf-8")
    stubs = {
        "tvref": _stub("tvref"),
        "tvref.transforms": _stub("tvref.transforms"),
        "tvref.transforms._presets": _stub("tvref.transforms._presets",
                                           ImageClassification=object),
        "tvref.utils": _stub("tvref.utils", _log_api_usage_once=lambda obj: None),
        "tvref.models": _stub("tvref.models"),
        "tvref.models._api": _stub("tvref.models._api", register_model=_identity_decorator,
                                   Weights=lambda **kw: kw, WeightsEnum=_WeightsEnum),
        "tvref.models._meta": _stub("tvref.models._meta", _IMAGENET_CATEGORIES=[]),
        "tvref.models._utils": _stub(
            "tvref.models._utils", handle_legacy_interface=_identity_decorator,
            _ovewrite_named_param=lambda kwargs, name, value: kwargs.setdefault(name, value)),
    }
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        module = types.ModuleType("tvref.models.resnet")
        module.__package__ = "tvref.models"
        exec(compile(source, "torchvision/models/resnet.py", "exec"), module.__dict__)
    finally:
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value
    return module


def _reference(torchvision_resnet: types.ModuleType, path: Path, **kwargs: object):
    torch.manual_seed(0)
    net = torchvision_resnet.resnet50(weights=None, **kwargs)
    with torch.no_grad():  # random running statistics, so batch norm is not the identity
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    torch.save(net.state_dict(), path)
    return net.eval()


def test_the_reference_is_torchvisions_resnet50(torchvision_resnet):
    net = torchvision_resnet.resnet50(weights=None)
    assert sum(p.numel() for p in net.parameters()) == 25_557_032  # torchvision's documented count


def test_glcnet_encoder_equals_torchvision_resnet50(torchvision_resnet, tmp_path):
    ref = _reference(torchvision_resnet, tmp_path / "resnet50.pth",
                     replace_stride_with_dilation=[False, False, True])  # output stride 16
    # GLCNet's spec (seed-models.md §3): layer4 at stride 1 with dilation 2 in every block;
    # torchvision keeps dilation 1 in the first dilated block, so that one conv is set to match
    first = ref.layer4[0].conv2
    first.dilation, first.padding = (2, 2), (2, 2)
    net = build("glcnet", in_channels=3, num_classes=4, aspp_channels=16,
                low_level_channels=8, decoder_channels=16)
    load_backbone(net, "glcnet", tmp_path / "resnet50.pth")
    encoder = net.backbone.eval()
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        y = ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))
        low = ref.layer1(y)
        high = ref.layer4(ref.layer3(ref.layer2(low)))
        own_low, own_high = encoder(x)
    assert own_high.shape == high.shape == (2, 2048, 6, 6)
    torch.testing.assert_close(own_low, low, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(own_high, high, rtol=1e-4, atol=1e-4)


def test_cafe_streams_equal_torchvision_resnet50(torchvision_resnet, tmp_path):
    ref = _reference(torchvision_resnet, tmp_path / "resnet50.pth")
    net = build("cafe", in_channels=3, num_classes=4, aux_channels=1,
                decoder_blocks=(1, 1, 1, 1), final_blocks=1)
    load_backbone(net, "cafe", tmp_path / "resnet50.pth")
    stream = net.rgb.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        stem = ref.relu(ref.bn1(ref.conv1(x)))
        torch.testing.assert_close(stream.stem(x), stem, rtol=1e-4, atol=1e-5)
        y = ref.maxpool(stem)
        for own, theirs in zip(stream.stages, (ref.layer1, ref.layer2, ref.layer3, ref.layer4)):
            expected = theirs(y)
            torch.testing.assert_close(own.eval()(y), expected, rtol=1e-4, atol=1e-4)
            y = expected
