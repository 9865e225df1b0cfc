"""The dock's parameter logic: plain states in, rs_seg:* parameter dicts out (no widgets)."""
from __future__ import annotations

import datetime as dt

import pytest

from rs_seg_qgis.gui.messages import InputProblem
from rs_seg_qgis.gui.params import (OUTLINES_MODEL, OUTLINES_PIXEL, ChangeState, Outputs,
                                    SegmentState, Tiling, TrainState,
                                    change_parameters, default_model_path, extent_text,
                                    processing_device, run_name, segment_parameters,
                                    train_parameters)


def test_segment_parameters_carry_every_choice(tmp_path):
    state = SegmentState(layer="layer_id", layer_name="t1", model="/m/unet.rsmodel",
                         aux_layer="dsm_id", device="cuda:0", tiling=Tiling(256, 32, 4),
                         extent=extent_text(1.0, 2.0, 3.0, 4.0, "EPSG:32633"),
                         probabilities=True, polygons=True,
                         outputs=Outputs(str(tmp_path), "t1_unet_x"))
    assert segment_parameters(state) == {
        "INPUT": "layer_id", "AUX_INPUT": "dsm_id", "MODEL": "/m/unet.rsmodel", "DEVICE": "cuda",
        "TILE_SIZE": 256, "OVERLAP": 32, "BATCH_SIZE": 4,
        "EXTENT": "1.0,3.0,2.0,4.0 [EPSG:32633]",
        "OUTPUT": str(tmp_path / "t1_unet_x_classes.tif"),
        "OUTPUT_PROBABILITY": str(tmp_path / "t1_unet_x_probabilities.tif"),
        "OUTPUT_VECTOR": str(tmp_path / "t1_unet_x_classes.gpkg")}


def test_class_polygons_shaped_by_the_model_or_as_pixel_outlines(tmp_path):
    def state(outlines):
        return SegmentState("id", "t1", "m.rsmodel", polygons=True, outlines=outlines,
                            outputs=Outputs(str(tmp_path), "s"))

    assert "AS_IS" not in segment_parameters(state(OUTLINES_MODEL))
    assert segment_parameters(state(OUTLINES_PIXEL))["AS_IS"] == "all"


def test_segment_defaults_leave_model_values_and_optional_outputs_out(tmp_path):
    params = segment_parameters(SegmentState("id", "t1", "m.rsmodel",
                                             outputs=Outputs(str(tmp_path), "s")))
    assert set(params) == {"INPUT", "MODEL", "DEVICE", "OUTPUT"} and params["DEVICE"] == "auto"


@pytest.mark.parametrize("state, words", [
    (SegmentState("", "", "m.rsmodel"), "raster layer"),
    (SegmentState("id", "t1", ""), "segmentation model"),
    (SegmentState("id", "t1", "m.rsmodel", aux_layer="id"), "auxiliary"),
])
def test_segment_bad_input_says_what_to_change(state, words):
    with pytest.raises(InputProblem, match=words):
        segment_parameters(state)


def test_change_parameters_cva_and_from_to(tmp_path):
    out = Outputs(str(tmp_path), "c")
    cva = change_parameters(ChangeState("a", "t1", "b", "t2", threshold=0.4, outputs=out))
    assert cva["METHOD"] == "cva" and "MODEL" not in cva and cva["THRESHOLD"] == 0.4
    assert cva["OUTPUT_VECTOR"].endswith("c_change.gpkg") and "OUTPUT_FROM_TO" not in cva
    model = change_parameters(ChangeState("a", "t1", "b", "t2", model="ch.rsmodel",
                                          segmentation_model="seg.rsmodel", polygons=False,
                                          probabilities=True, outputs=out))
    assert model["METHOD"] == "model" and model["MODEL"] == "ch.rsmodel"
    assert model["SEGMENTATION_MODEL"] == "seg.rsmodel"
    assert model["OUTPUT_FROM_TO"].endswith("from_to.tif")
    assert model["OUTPUT_FROM_TO_TABLE"].endswith("from_to.csv")
    assert "OUTPUT_VECTOR" not in model and "OUTPUT_PROBABILITY" in model
    with pytest.raises(InputProblem, match="same layer"):
        change_parameters(ChangeState("a", "t1", "a", "t1"))
    with pytest.raises(InputProblem, match="before"):
        change_parameters(ChangeState("", "", "b", "t2"))


def test_train_parameters_polygons_rasters_and_change():
    alg, params = train_parameters(TrainState(
        "segmentation", ["img"], "unet", "/models/new", label_polygons="poly",
        class_field="class", epochs=3, batch=4, tile=128, learning_rate=0.002,
        validation_fraction=0.25, ignore_value=0, init_model="/models/old.rsmodel",
        device="cpu"))
    assert alg == "rs_seg:train_segmentation"
    assert params == {"INPUT": ["img"], "LABEL_POLYGONS": "poly", "CLASS_FIELD": "class",
                      "ARCHITECTURE": "unet", "EPOCHS": 3, "BATCH_SIZE": 4, "TILE_SIZE": 128,
                      "LEARNING_RATE": 0.002, "VALIDATION_FRACTION": 0.25, "IGNORE_VALUE": 0,
                      "INIT_MODEL": "/models/old.rsmodel", "INIT_HEAD": "keep", "DEVICE": "cpu",
                      "OUTPUT_MODEL": "/models/new.rsmodel"}
    alg, params = train_parameters(TrainState("change", ["b1"], "fcsiamdiff", "m.rsmodel",
                                              images_after=["a1"], label_rasters=["lab"]))
    assert alg == "rs_seg:train_change"
    assert params["INPUT_T1"] == ["b1"] and params["INPUT_T2"] == ["a1"]
    _, pretrained = train_parameters(TrainState("segmentation", ["img"], "glcnet", "g.rsmodel",
                                                label_rasters=["lab"],
                                                backbone_weights="/w/resnet50.pth"))
    assert pretrained["BACKBONE_WEIGHTS"] == "/w/resnet50.pth"
    assert "LEARNING_RATE" not in pretrained  # the architecture's rate
    _, tuned = train_parameters(TrainState("change", ["b1"], "fcsiamdiff", "t.rsmodel",
                                           images_after=["a1"], label_rasters=["lab"],
                                           init_model="/m/base.rsmodel", new_head=True,
                                           normalisation="percentile", time_budget_s=600))
    assert (tuned["INIT_MODEL"], tuned["INIT_HEAD"]) == ("/m/base.rsmodel", "new")
    assert tuned["NORMALISATION"] == "percentile" and tuned["TIME_BUDGET"] == 600
    assert params["LABELS"] == ["lab"] and "INPUT" not in params


@pytest.mark.parametrize("state, words", [
    (TrainState("segmentation", [], "unet", "m"), "training image"),
    (TrainState("segmentation", ["i"], "unet", "m"), "labels"),
    (TrainState("segmentation", ["i"], "unet", "m", label_polygons="p"), "class field"),
    (TrainState("segmentation", ["i", "j"], "unet", "m", label_rasters=["l"]), "one label"),
    (TrainState("segmentation", ["i"], "", "m", label_rasters=["l"]), "architecture"),
    (TrainState("change", ["i"], "x", "m", label_rasters=["l"]), "after"),
])
def test_train_bad_input(state, words):
    with pytest.raises(InputProblem, match=words):
        train_parameters(state)


def test_names_devices_and_default_model_path(tmp_path):
    when = dt.datetime(2026, 5, 4, 14, 2)
    assert run_name("Segment", "t1", "/x/unet.rsmodel", when) == "Segment t1 — unet 14:02"
    assert run_name("Change", "a → b", "", when) == "Change a → b — CVA 14:02"
    assert [processing_device(d) for d in ("auto", "cpu", "cuda:1", "", "bogus")] == \
        ["auto", "cpu", "cuda", "auto", "auto"]
    first = default_model_path(tmp_path, "unet", when)
    assert first == str(tmp_path / "unet-20260504-1402.rsmodel")
    open(first, "w").close()
    assert default_model_path(tmp_path, "unet", when) == str(tmp_path /
                                                             "unet-20260504-1402-2.rsmodel")
