"""The preview's int8 decoder: its up-scaling really runs in int8, the graph is cached beside the
fp32 one, and its masks agree with fp32's at IoU ≥ 0.98 on many prompts (random weights, the
published checkpoints' 1024² frame and 64² embedding)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from engine.click.sam_int8 import quantize_decoder
from engine.click.sam_onnx import OnnxSamDecoder
from engine.models.sam import build_sam
from engine.models.sam.predictor import Embedding


@pytest.fixture(scope="module")
def decoder():
    return OnnxSamDecoder(build_sam("tiny", img_size=1024, seed=7))


def test_the_int8_graph_quantises_the_upscaling_only(decoder):
    session = decoder.int8_session()
    assert session is not decoder.session and session is decoder.int8_session()
    path = decoder.path.with_name(decoder.path.stem + "-int8.onnx")
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("MatMulInteger") == 2       # the two up-scaling products, nothing else
    assert "MatMulInteger" not in [n.op_type for n in onnx.load(str(decoder.path)).graph.node]


def test_a_graph_without_the_upscaling_products_is_refused(tmp_path):
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(tmp_path / "other.onnx"))
    with pytest.raises(ValueError, match="not a prepared SAM decoder graph"):
        quantize_decoder(tmp_path / "other.onnx", tmp_path / "other-int8.onnx")


def test_int8_masks_agree_with_fp32(decoder):
    rng = np.random.default_rng(0)
    emb = Embedding(torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(1)),
                    torch.zeros(1), (1024, 1024), (1024, 1024))
    ious = []
    for k in range(12):
        points = rng.uniform(0, 1024, (1 + k % 2, 2))
        labels = np.array([1, 0][:len(points)])
        box = None
        if k % 4 == 3:
            x0, y0 = rng.uniform(0, 800, 2)
            points, labels, box = None, None, (x0, y0, x0 + 200, y0 + 150)
        for shape in (None, (256, 256)):  # the click's window mask and the preview's
            fp32 = decoder.decode(emb, points, labels, box, shape=shape).mask
            int8 = decoder.decode(emb, points, labels, box, shape=shape, precision="int8").mask
            ious.append((fp32 & int8).sum() / (fp32 | int8).sum())
            assert 0.05 < fp32.mean() < 0.95  # a mixed mask: the IoU measures something
    assert min(ious) >= 0.98
    assert min(ious) < 1.0  # the int8 products really differ from fp32's
