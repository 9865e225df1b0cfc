"""The input value-range guard: another pixel scale is one sentence with the fix."""
from __future__ import annotations

import numpy as np
import pytest

from engine.inference.range_guard import check_range, full_scale, range_mismatch
from engine.io.radiometry import BandStats
from engine.jobs import InputError

UINT8 = {"bands": [{"name": "R"}, {"name": "G"}, {"name": "B"}], "dtype": "uint8",
         "mean": [120.0, 110.0, 100.0], "std": [50.0, 45.0, 40.0]}


def stats(high: float, bands: int = 3) -> BandStats:
    rng = np.random.default_rng(0)
    return BandStats.of(rng.uniform(0, high, (bands, 5000)))


def test_scales():
    assert [full_scale(v) for v in (0.4, 1.3, 60, 240, 2900, 4800, 12000, 50000)] == \
        [1, 1, 100, 255, 4095, 10000, 10000, 65535]


@pytest.mark.parametrize("high, dtype, fix", [(0.4, "float32", "--input-scale 1"),
                                              (5000.0, "uint16", "--input-scale 10000")])
def test_other_scale_is_refused_with_the_fix(high, dtype, fix):
    card = {"inputs": {"image": UINT8}}
    with pytest.raises(InputError, match=f"the input's values reach .* but the model reads about "
                                         f"0–2\\d\\d \\(uint8 input, pixel 255 = 1.0\\).*{fix}"):
        check_range(card, "image", stats(high), dtype)
    chosen = {"inputs": {"image": UINT8}, "definition": {"input_scale": 255}}
    assert "Check the scale you gave" in check_range(chosen, "image", stats(high), dtype)


def test_same_scale_or_own_normalisation_passes():
    card = {"inputs": {"image": UINT8}}
    assert check_range(card, "image", stats(230), "float32") is None
    assert check_range(card, "image", stats(3), "uint8") is None      # a dark 8-bit scene
    per_image = dict(UINT8, normalisation="image")
    assert range_mismatch(per_image, stats(0.3)) is None
