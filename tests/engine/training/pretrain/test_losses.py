"""NT-Xent, RoI max pooling, the style vector and the GLCNet objective's heads."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import engine.models.glcnet as glcnet
from engine.training.pretrain.losses import GLCObjective, nt_xent, roi_max_pool, style_vector
from tests.engine.training.pretrain.conftest import NET


def _nt_xent_direct(z1, z2, tau):
    z = [v / np.linalg.norm(v) for v in np.concatenate([z1, z2])]
    n2 = len(z)
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        pos = (i + n) % n2
        num = math.exp(float(z[i] @ z[pos]) / tau)
        den = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(n2) if k != i)
        total += -math.log(num / den)
    return total / n2


def test_nt_xent_matches_a_direct_computation():
    z1 = np.array([[1.0, 0.0], [0.6, 0.8]])
    z2 = np.array([[0.8, 0.6], [0.0, 2.0]])
    got = nt_xent(torch.tensor(z1), torch.tensor(z2), 0.5)
    assert float(got) == pytest.approx(_nt_xent_direct(z1, z2, 0.5), rel=1e-5)
    rng = np.random.default_rng(3)
    for n in (1, 3, 5):                                # any batch size, masks built per call
        a, b = rng.normal(size=(n, 7)), rng.normal(size=(n, 7))
        got = nt_xent(torch.tensor(a), torch.tensor(b), 0.5)
        assert float(got) == pytest.approx(_nt_xent_direct(a, b, 0.5), rel=1e-5)
    assert float(nt_xent(torch.randn(1, 4), torch.randn(1, 4))) == pytest.approx(0.0)


def test_nt_xent_prefers_matching_views():
    torch.manual_seed(0)
    z = torch.randn(16, 32)
    same = nt_xent(z, z + 0.01 * torch.randn(16, 32))
    other = nt_xent(z, torch.randn(16, 32))
    assert float(same) < float(other)
    assert float(same) < math.log(31)                 # below chance level


def test_roi_max_pool_follows_roipool_bins():
    torch.manual_seed(0)
    feat = torch.randn(2, 3, 20, 20)
    centres = torch.tensor([[5, 7], [10, 4], [12, 12]])
    owner = torch.tensor([0, 1, 1])
    ps = 6
    got = roi_max_pool(feat, owner, centres, ps)
    assert got.shape == (3, 3, ps, ps)
    r = ps + 1
    for n in range(3):
        y0, x0 = int(centres[n, 0]) - ps // 2, int(centres[n, 1]) - ps // 2
        for i in range(ps):
            for j in range(ps):
                hs, he = math.floor(i * r / ps), math.ceil((i + 1) * r / ps)
                ws, we = math.floor(j * r / ps), math.ceil((j + 1) * r / ps)
                ref = feat[owner[n], :, y0 + hs:y0 + he, x0 + ws:x0 + we].amax((1, 2))
                assert torch.allclose(got[n, :, i, j], ref)


def test_style_vector_is_channel_mean_and_variance():
    x = torch.randn(2, 5, 3, 4)
    s = style_vector(x)
    assert s.shape == (2, 10)
    assert torch.allclose(s[:, :5], x.mean((2, 3)), atol=1e-6)
    assert torch.allclose(s[:, 5:], x.var((2, 3), unbiased=False), atol=1e-6)


def test_objective_heads_and_batch_of_one():
    torch.manual_seed(0)
    net = glcnet.build_glcnet(3, 64, **NET)
    obj = GLCObjective(net, NET["aspp_channels"], 64, patch_size=6)
    assert [m.in_features for m in obj.global_head if isinstance(m, torch.nn.Linear)] == [32, 16]
    assert [m.out_features for m in obj.global_head if isinstance(m, torch.nn.Linear)] == [16, 64]
    assert [m.in_features for m in obj.local_head if isinstance(m, torch.nn.Linear)] == [64, 64]
    v = torch.randn(1, 3, 32, 32)
    c = torch.tensor([[[8, 8], [20, 20]]])
    losses = obj(v, v.flip(-1), c, c)
    assert losses.shape == (3,) and torch.isfinite(losses).all()
    losses = losses.detach()
    assert float(losses[1]) == pytest.approx(0.0, abs=1e-6)        # one pair: no negatives
    assert float(losses[0]) == pytest.approx(0.5 * float(losses[1]) + 0.5 * float(losses[2]))
