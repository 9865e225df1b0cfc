"""``engine predict --uncertainty`` then ``engine refine --repredict`` as a user runs them."""
import rasterio

from tests.engine.test_cli import engine
from tests.engine.training.refine_helpers import box, corrections, scene


def test_one_round_from_the_command_line(tmp_path):
    image, parent = scene(tmp_path)
    pred, unsure = tmp_path / "p0.tif", tmp_path / "u0.tif"
    r = engine("predict", "--model", parent, "--input", image, "--output", pred,
               "--uncertainty", unsure, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert f"and {unsure}" in r.stdout
    gpkg = corrections(tmp_path / "c.gpkg", [(box(4, 4, 40, 40), 1), (box(50, 50, 90, 90), 2),
                                             (box(4, 50, 40, 90), 1)])
    r = engine("refine", "--model", parent, "--image", image, "--corrections", gpkg,
               "--out", tmp_path / "r.rsmodel", "--prediction", pred, "--uncertainty", unsure,
               "--time-budget", "2", "--device", "cpu", "--repredict", tmp_path / "p1.tif",
               "--difference", tmp_path / "d.tif")
    assert r.returncode == 0, r.stderr
    assert "round 1, 3 correction(s)" in r.stdout and "held-out accuracy" in r.stdout
    assert "changed class:" in r.stdout and "m²" in r.stdout
    with rasterio.open(tmp_path / "d.tif") as d:
        assert d.count == 1


def test_bad_input_exits_2_with_a_sentence(tmp_path):
    image, parent = scene(tmp_path)
    gpkg = corrections(tmp_path / "c.gpkg", [(box(4, 4, 40, 40), 9)])
    r = engine("refine", "--model", parent, "--image", image, "--corrections", gpkg,
               "--out", tmp_path / "r.rsmodel", "--time-budget", "1", "--device", "cpu")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--init-head new" in r.stderr
    r = engine("refine", "--model", parent, "--image", image, "--corrections", gpkg,
               "--out", tmp_path / "r.rsmodel", "--difference", tmp_path / "d.tif")
    assert r.returncode == 2 and "--repredict" in r.stderr
    r = engine("refine", "--model", parent, "--image", image, "--corrections", gpkg,
               "--out", tmp_path / "r.rsmodel", "--repredict", tmp_path / "p1.tif",
               "--extent", "1,2,3")
    assert r.returncode == 2 and "--extent takes four numbers" in r.stderr
    r = engine("refine", "--model", parent, "--image", image, "--corrections", gpkg,
               "--out", tmp_path / "r.rsmodel", "--repredict", tmp_path / "p1.tif",
               "--difference", tmp_path / "d.tif", "--time-budget", "30", "--device", "cpu")
    assert r.returncode == 2 and "previous round's class raster" in r.stderr
    assert "refine:" not in r.stdout + r.stderr  # refused before any of the round's work
    assert not (tmp_path / "r.rsmodel").exists()


def test_outputs_that_are_inputs_are_refused_before_any_work(tmp_path):
    image, parent = scene(tmp_path)
    gpkg = corrections(tmp_path / "c.gpkg", [(box(4, 4, 40, 40), 1)])
    before = {p: p.read_bytes() for p in (image, parent)}
    r = engine("refine", "--model", parent, "--image", image, "--corrections", gpkg,
               "--out", tmp_path / "r.rsmodel", "--repredict", image, "--device", "cpu")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--repredict" in r.stderr
    r = engine("refine", "--model", parent, "--image", image, "--corrections", gpkg,
               "--out", parent, "--device", "cpu")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--out" in r.stderr
    assert {p: p.read_bytes() for p in before} == before
    assert not (tmp_path / "r.rsmodel").exists()


def test_start_chooses_where_the_round_starts(tmp_path):
    from engine.formats.modelfile import read_card
    image, parent = scene(tmp_path)
    gpkg = corrections(tmp_path / "c.gpkg", [(box(4, 4, 40, 40), 1), (box(50, 50, 90, 90), 2)])
    for start in ("fresh", "parent"):
        out = tmp_path / f"from-{start}.rsmodel"
        r = engine("refine", "--model", parent, "--image", image, "--corrections", gpkg,
                   "--out", out, "--start", start, "--max-epochs", "1", "--device", "cpu")
        assert r.returncode == 0, r.stderr
        assert read_card(out)["lineage"]["start"] == start
    r = engine("refine", "--model", parent, "--image", image, "--corrections", gpkg,
               "--out", tmp_path / "x.rsmodel", "--start", "scratch")
    assert r.returncode == 2 and "invalid choice: 'scratch'" in r.stderr
