"""ResNet checkpoints (torchvision / timm layout) → CaFE, GLCNet, SRCBTFusion-Net."""
import pytest
import torch
from safetensors.torch import save_file

from engine.jobs import InputError, ModelFileError
from engine.models import build
from engine.weights import inspect_backbone, load_backbone

from .published import random_tensors, resnet_shapes


@pytest.fixture(scope="module")
def r50(tmp_path_factory):
    """A random-valued file with exactly torchvision's resnet50 names and shapes."""
    state = random_tensors(resnet_shapes(), seed=1)
    path = tmp_path_factory.mktemp("w") / "resnet50-0676ba61.pth"
    torch.save(state, path)
    return path, state


def test_glcnet_encoder_equals_the_file(r50):
    path, state = r50
    net = build("glcnet", in_channels=3, num_classes=5, aspp_channels=16,
                low_level_channels=8, decoder_channels=16)
    report = load_backbone(net, "glcnet", path)
    own = net.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(own["backbone." + key], value.to(own["backbone." + key].dtype)), key
    assert report.missing == [] and sorted(report.unexpected) == ["fc.bias", "fc.weight"]
    assert len(report.matched) == len(state) - 2 and report.normalisation == "imagenet"
    line = report.line()
    assert "[resnet]" in line and f"{len(state) - 2} tensors matched" in line and "\n" not in line


def test_glcnet_first_conv_adapts_to_four_and_one_band(r50):
    path, state = r50
    rgb = state["conv1.weight"]
    for bands in (4, 1):
        net = build("glcnet", in_channels=bands, num_classes=3, aspp_channels=16,
                    low_level_channels=8, decoder_channels=16)
        report = load_backbone(net, "glcnet", path)
        w = net.backbone.conv1.weight.detach()
        if bands == 4:
            assert torch.equal(w[:, :3], rgb)
            assert torch.allclose(w[:, 3:], rgb.mean(1, keepdim=True))
        else:
            assert torch.allclose(w, rgb.sum(1, keepdim=True))
        assert "backbone.conv1.weight" in report.adapted


def test_cafe_streams_and_safetensors(r50, tmp_path):
    _, state = r50
    path = tmp_path / "model.safetensors"                   # timm's hub file name
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    net = build("cafe", in_channels=4, num_classes=3, aux_channels=2,
                decoder_blocks=(1, 1, 1, 1), final_blocks=1)
    report = load_backbone(net, "cafe", path)
    own = net.state_dict()
    assert torch.equal(own["rgb.layer3.5.conv2.weight"], state["layer3.5.conv2.weight"])
    assert torch.equal(own["dsm.layer4.2.bn3.running_var"], state["layer4.2.bn3.running_var"])
    mean = state["conv1.weight"].mean(1, keepdim=True)
    assert torch.allclose(own["dsm.conv1.weight"], mean.expand(-1, 2, -1, -1))
    assert torch.equal(own["rgb.conv1.weight"][:, :3], state["conv1.weight"])
    assert report.missing == [] and set(report.adapted) == {"rgb.conv1.weight", "dsm.conv1.weight"}


def test_srcbtfusion_trunk_takes_convolutions_and_norm_affines(r50):
    path, state = r50
    net = build("srcbtfusion", in_channels=3, num_classes=4, vit_depth=1, vit_hidden=64,
                vit_heads=2, vit_mlp=64, dec_width=64)
    report = load_backbone(net, "srcbtfusion", path)
    own = net.state_dict()
    assert torch.equal(own["trunk.root_conv.weight"], state["conv1.weight"])
    assert torch.equal(own["trunk.root_gn.weight"], state["bn1.weight"])
    assert torch.equal(own["trunk.stages.2.5.conv3.weight"], state["layer3.5.conv3.weight"])
    assert torch.equal(own["trunk.stages.1.0.gn_proj.bias"], state["layer2.0.downsample.1.bias"])
    # stage 3 has 9 units, torchvision's layer3 6: units 6–8 stay random and are reported
    assert any(k.startswith("trunk.stages.2.8.") for k in report.missing)
    assert "layer4.0.conv1.weight" in report.unexpected
    assert "bn1.running_mean" in report.unexpected


def test_wrong_size_or_architecture_is_refused(tmp_path):
    r18 = tmp_path / "resnet18.pth"
    torch.save(random_tensors(resnet_shapes((2, 2, 2, 2), bottleneck=False)), r18)
    net = build("glcnet", in_channels=3, num_classes=3, aspp_channels=16,
                low_level_channels=8, decoder_channels=16)
    with pytest.raises(ModelFileError, match="another architecture or size"):
        load_backbone(net, "glcnet", r18)
    with pytest.raises(InputError, match="no pre-trained encoder"):
        inspect_backbone("unet", r18)
