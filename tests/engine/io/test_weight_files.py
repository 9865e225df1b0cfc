"""Containers recognised from bytes; truncated, unsafe and foreign files refused in sentences."""
import os

import pytest
import torch

from engine.jobs import InputError, ModelFileError
from engine.weights import load_backbone, read_weights
from engine.weights.adapt import adapt_first_conv
from engine.models import build


class _Payload:
    """Unpickling this would run a shell command: weights-only loading must refuse it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_container_from_bytes_not_name(tmp_path):
    path = tmp_path / "weights.npz"                 # a torch file with a misleading name
    torch.save({"module.conv1.weight": torch.ones(2)}, path)
    wf = read_weights(path)
    assert wf.container == "pytorch" and list(wf.tensors) == ["conv1.weight"]
    nested = tmp_path / "ckpt.bin"
    torch.save({"epoch": 3, "state_dict": {"a": torch.zeros(1)}}, nested)
    assert list(read_weights(nested).tensors) == ["a"]


def test_truncated_files_are_refused(tmp_path):
    full = tmp_path / "full.pth"
    torch.save({"w": torch.randn(256, 256)}, full)
    data = full.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated"):
        read_weights(cut)
    from safetensors.torch import save_file
    st = tmp_path / "w.safetensors"
    save_file({"w": torch.randn(64, 64)}, str(st))
    cut2 = tmp_path / "cut.safetensors"
    cut2.write_bytes(st.read_bytes()[:200])
    with pytest.raises(ModelFileError, match="truncated"):
        read_weights(cut2)
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty or truncated"):
        read_weights(tmp_path / "empty.pth")


def test_pickle_with_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "x": _Payload(str(marker))}, path)
    with pytest.raises(ModelFileError, match="never executed"):
        read_weights(path)
    assert not marker.exists()


def test_unknown_layout_lists_the_known_ones(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.0.weight": torch.zeros(2, 3, 3, 3)}, path)
    net = build("glcnet", in_channels=3, num_classes=3, depth=18, width=8, aspp_channels=8,
                low_level_channels=4, decoder_channels=8)
    with pytest.raises(ModelFileError) as err:
        load_backbone(net, "glcnet", path)
    text = str(err.value)
    for name in ("torchvision", "R50+ViT-B_16", "DINOv2", "Segment Anything"):
        assert name in text
    with pytest.raises(InputError, match="does not exist"):
        read_weights(tmp_path / "absent.pth")
    (tmp_path / "text.pth").write_text("hello, not weights")
    with pytest.raises(ModelFileError, match="not a PyTorch"):
        read_weights(tmp_path / "text.pth")


def test_zero_bands_cannot_be_adapted():
    with pytest.raises(InputError, match="at least one band"):
        adapt_first_conv(torch.randn(8, 3, 7, 7), 0)
