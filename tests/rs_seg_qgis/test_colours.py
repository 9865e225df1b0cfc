"""Colour choices: light colours tinted, the change colour unlike the classes, from-to legend."""
from __future__ import annotations

from rs_seg_qgis import colours

ISPRS = [[255, 255, 255], [0, 0, 255], [0, 255, 255], [0, 255, 0], [255, 255, 0], [255, 0, 0]]


def test_light_colours_are_tinted_and_others_kept():
    assert colours.readable([255, 255, 255]) == [199, 199, 199]
    assert colours.readable([255, 255, 255, 255]) == [199, 199, 199, 255]
    assert colours.readable([0, 0, 0, 0]) == [0, 0, 0, 0]  # transparent stays as it is
    assert colours.readable([255, 0, 0]) == [255, 0, 0]
    assert all(not colours.is_light(colours.readable(c)) for c in ISPRS)


def test_change_colour_is_far_from_every_class_colour():
    change = colours.change_colour(ISPRS)
    assert change == (255, 0, 255)
    nearest = min(sum((a - b) ** 2 for a, b in zip(change, c)) ** 0.5 for c in ISPRS)
    assert nearest > 250
    tinted = [colours.readable(c) for c in ISPRS]  # as the layers show them
    assert colours.change_colour(tinted) == (255, 0, 255)
    assert colours.change_colour(ISPRS + [[250, 5, 250]]) != (255, 0, 255)
    assert colours.change_colour([[0, 0, 0, 0]]) == (255, 0, 255)  # transparent is no colour


def test_from_to_legend_keeps_the_main_transitions_by_area_and_groups_the_rest():
    names = {0: "unchanged"} | {c: f"a{c} -> b{c}" for c in range(1, 13)}
    areas = {c: float(c) for c in range(1, 13)}
    palette = [[i, i, i, 255] for i in range(colours.MAIN_TRANSITIONS)]
    rows = colours.from_to_legend(names, areas, palette)
    main = [label for code, label, _ in rows if label not in ("other", "unchanged")]
    assert len(main) == colours.MAIN_TRANSITIONS
    assert main[0] == f"a12 → b12 ({100 * 12 / 78:.1f} %)"  # largest first, arrows
    assert [code for code, _, _ in rows[:3]] == [12, 11, 10]
    others = [code for code, label, colour in rows if label == "other"]
    assert sorted(others) == [1, 2, 3, 4] and rows[-1] == (0, "unchanged", [0, 0, 0, 0])
    no_area = colours.from_to_legend({0: "unchanged", 1: "a -> b"}, {}, palette)
    assert no_area[0][1] == "other"  # a transition that never occurs gets no colour of its own
