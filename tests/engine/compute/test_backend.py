"""The array helpers give the same answer for torch tensors and numpy arrays."""
import numpy as np
import pytest
import torch

from engine.compute import backend as xp


@pytest.mark.parametrize("shape", [(6, 37, 53), (2, 8, 8), (1, 5, 4)])
def test_argmax0_matches_argmax_for_tensors_and_arrays(shape):
    rng = np.random.default_rng(0)
    # few distinct values: many ties, which must resolve to the first class like argmax
    scores = rng.integers(0, 3, shape).astype(np.float32)
    expected = scores.argmax(0)
    assert np.array_equal(xp.argmax0(scores), expected)
    got = xp.argmax0(torch.from_numpy(scores))
    assert torch.is_tensor(got)
    assert np.array_equal(got.numpy(), expected)


def test_argmax0_on_a_non_contiguous_slice():
    scores = torch.rand(9, 16, 16)
    part = scores[-3:]
    assert torch.equal(xp.argmax0(part), part.argmax(0))
