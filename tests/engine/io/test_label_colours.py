"""Colour tables and colour-coded label pixels → class values."""
from __future__ import annotations

import numpy as np
import pytest

from engine.io.label_colours import UNKNOWN, colours_to_values, read_colour_table
from engine.jobs import InputError


def test_isprs_preset_is_the_isprs_table():
    table = read_colour_table("ISPRS")
    assert [(c["value"], c["name"], c["color"]) for c in table][:2] == [
        (1, "impervious", [255, 255, 255]), (2, "building", [0, 0, 255])]
    assert len(table) == 6


def test_table_files_in_lines_or_json(tmp_path):
    lines = tmp_path / "t.txt"
    lines.write_text("# ISPRS-like\n0,0,255,building\n0 255 0 tall tree  # a comment\n")
    assert read_colour_table(str(lines)) == [
        {"value": 1, "name": "building", "color": [0, 0, 255]},
        {"value": 2, "name": "tall tree", "color": [0, 255, 0]}]
    js = tmp_path / "t.json"
    js.write_text('[{"name": "a", "color": [1, 2, 3]}, {"name": "b", "color": [4, 5, 6]}]')
    assert [c["color"] for c in read_colour_table(str(js))] == [[1, 2, 3], [4, 5, 6]]


@pytest.mark.parametrize("text, message", [
    ("0,0,255,a\n0,0,255,b\n", "distinct colours"),
    ("0,0,300,a\n1,1,1,b\n", "distinct colours of 0..255"),
    ("red,green\n", "not a colour table"),
])
def test_bad_tables_are_sentences(tmp_path, text, message):
    path = tmp_path / "t.txt"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        read_colour_table(str(path))
    with pytest.raises(InputError, match="no such colour table"):
        read_colour_table(str(tmp_path / "missing.txt"))


def test_colours_map_to_values_and_unknown_colours_to_nothing():
    table = read_colour_table("isprs")
    pixels = [(0, 0, 255), (255, 255, 0), (0, 0, 0), (0, 255, 0)]  # building, car, black, tree
    rgb = np.array(pixels, np.uint8).T[:, None, :]  # 3×1×4
    assert colours_to_values(rgb, table).tolist() == [[2, 5, UNKNOWN, 4]]
