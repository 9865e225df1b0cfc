"""RS Seg card → Deepness metadata (exact keys, JSON-encoded values as Deepness parses them)."""
from __future__ import annotations

import json

from engine.formats.card import default_card
from engine.formats.onnx.metadata import CARD_KEY, CONTRACT_KEY, deepness_metadata, export_metadata


def test_deepness_keys_for_a_segmentation_card():
    card = default_card("unet", 3, 4, tile_size=256, overlap=32, gsd_m=0.3)
    meta = {k: json.loads(v) for k, v in deepness_metadata(card).items()}
    assert meta["model_type"] == "Segmentor"
    assert meta["class_names"] == {str(i): c["name"] for i, c in enumerate(card["classes"])}
    assert meta["resolution"] == 30.0                       # cm per pixel
    assert meta["tiles_size"] == meta["tile_size"] == 256
    assert meta["tiles_overlap"] == 12                      # 32 of 256 px, in %
    assert meta["standardization_mean"] == [0.0] * 3 and meta["standardization_std"] == [1.0] * 3


def test_multi_input_cards_carry_no_deepness_keys():
    change = default_card("fcsiamdiff", 3, 2)
    meta = export_metadata(change, {"inputs": {"t1": "t1", "t2": "t2"}})
    assert set(meta) == {CARD_KEY, CONTRACT_KEY}
    assert json.loads(meta[CARD_KEY])["task"] == "change"
