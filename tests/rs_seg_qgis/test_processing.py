"""Every rs_seg algorithm through processing.run on small generated rasters, plus cancel,
background tasks, styled loading and the missing-torch path."""
from __future__ import annotations

import gc
import json
import types

import numpy as np
import pytest
import rasterio
from qgis.core import (QgsApplication, QgsCoordinateReferenceSystem, QgsCoordinateTransform,
                       QgsPalettedRasterRenderer, QgsPointXY, QgsProcessingAlgRunnerTask,
                       QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback,
                       QgsProject, QgsRasterDataProvider, QgsRasterLayer, QgsVectorLayer)

from engine.formats.modelfile import read_card
from engine.click.point import segment_at
from rs_seg_qgis.colours import readable
from tests.conftest import labelled_scene, make_model, write_raster

pytestmark = pytest.mark.qgis


@pytest.fixture(autouse=True)
def _clear_leaked_frames():
    """PyQGIS 3.22 never releases the traceback of an exception raised in processAlgorithm, which
    keeps every frame up the Python call chain alive, the test's included.  QGIS objects in those
    frames would be destroyed after QGIS has exited, crashing the process (a GDAL/OGR layer
    segfaults), so clear the frames' locals when each test ends."""
    yield
    for tb in [o for o in gc.get_objects() if type(o) is types.TracebackType]:
        frame = tb.tb_frame
        while frame is not None:
            try:
                frame.clear()
            except RuntimeError:  # still running: pytest's own frames, above the test
                break
            frame = frame.f_back


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scene")
    rng = np.random.default_rng(7)
    image = write_raster(folder / "image.tif", rng.integers(0, 255, (4, 96, 96), dtype=np.uint8))
    model = make_model(folder / "unet.rsmodel", base=4, depth=2, tile=64, overlap=16)
    return image, model


def run(alg, params, **kwargs):
    import processing
    return processing.run(f"rs_seg:{alg}", params, **kwargs)


def loaded(path):
    """The project layer whose source is ``path``."""
    matches = [lyr for lyr in QgsProject.instance().mapLayers().values()
               if lyr.source().split("|")[0] == str(path)]
    assert len(matches) == 1, [lyr.source() for lyr in QgsProject.instance().mapLayers().values()]
    return matches[0]


def test_segment_loads_outputs_styled_with_the_model_classes(provider, scene, tmp_path,
                                                             qgis_new_project):
    import processing
    image, model = scene
    out, prob, vec = tmp_path / "classes.tif", tmp_path / "prob.tif", tmp_path / "classes.gpkg"
    processing.runAndLoadResults("rs_seg:segment", {
        "INPUT": str(image), "MODEL": str(model), "DEVICE": "cpu", "OUTPUT": str(out),
        "OUTPUT_PROBABILITY": str(prob), "OUTPUT_VECTOR": str(vec)})
    classes = read_card(model)["classes"]
    with rasterio.open(out) as o, rasterio.open(prob) as p:
        assert o.shape == (96, 96) and p.count == len(classes)
        present = set(np.unique(o.read(1)).tolist())
    raster = loaded(out)
    renderer = raster.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    assert [(c.value, c.label, c.color.getRgb()[:3]) for c in renderer.classes()] == \
        [(c["value"], c["name"], tuple(readable(c["color"]))) for c in classes]  # tinted
    polygons = loaded(vec)
    assert polygons.renderer().type() == "categorizedSymbol"
    assert polygons.renderer().classAttribute() == "class_name"
    categories = {c.value(): c.symbol().color().getRgb()[:3]
                  for c in polygons.renderer().categories()}
    assert categories == {c["name"]: tuple(readable(c["color"])) for c in classes}
    names = {f["class_name"] for f in polygons.getFeatures()}
    assert names == {c["name"] for c in classes if c["value"] in present}
    shape_of = {c["name"]: c["shape"] for c in classes}
    for f in polygons.getFeatures():  # the card's shapes, probabilities and provenance
        assert f["shape"] == shape_of[f["class_name"]]
        assert 0 <= f["prob_min"] <= f["prob_mean"] <= 1
        assert f["model"] == read_card(model)["name"] and len(f["model_sha256"]) == 64


def test_vectorize_regularises_and_smooths_named_classes(provider, tmp_path):
    _, labels = labelled_scene(tmp_path, size=64)
    vec = tmp_path / "v.gpkg"
    run("vectorize", {"INPUT": str(labels), "REGULARIZE": "2", "SMOOTH": "3",
                      "TOLERANCE": 2.0, "OUTPUT": str(vec)})
    shapes = {(f["class_value"], f["shape"]) for f in QgsVectorLayer(str(vec)).getFeatures()}
    assert shapes == {(1, "as-is"), (2, "building"), (3, "natural")}
    # the sentences name the form's parameters, not the command line's options
    with pytest.raises(QgsProcessingException) as bad:
        run("vectorize", {"INPUT": str(labels), "REGULARIZE": "roof", "OUTPUT": str(vec)})
    assert str(bad.value).startswith("Regularise as buildings: the raster has no class 'roof'; "
                                     "its classes are")
    with pytest.raises(QgsProcessingException) as bad:
        run("vectorize", {"INPUT": str(labels), "SMOOTH": "2,lake", "OUTPUT": str(vec)})
    assert str(bad.value).startswith("Smooth as natural shapes: the raster has no class 'lake'")
    for tolerance, problem in ((0.5, "below the pixel size"), (30.0, "above half the size")):
        with pytest.raises(QgsProcessingException) as bad:
            run("vectorize", {"INPUT": str(labels), "REGULARIZE": "2", "TOLERANCE": tolerance,
                              "OUTPUT": str(vec)})
        assert str(bad.value).startswith(f"Outline tolerance {tolerance:g} m is {problem}")
        assert "--" not in str(bad.value)


def test_segment_checks_outline_options_before_it_predicts(provider, scene, tmp_path):
    image, model = scene
    out, vec = tmp_path / "classes.tif", tmp_path / "classes.gpkg"
    for options, sentence in (({"REGULARIZE": "roof"}, "Regularise as buildings: the raster has "
                                                       "no class 'roof'"),
                              ({"TOLERANCE": 0.2}, "Outline tolerance 0.2 m is below the pixel "
                                                   "size (0.5 m)")):
        feedback = QgsProcessingFeedback()
        with pytest.raises(QgsProcessingException) as bad:
            run("segment", {"INPUT": str(image), "MODEL": str(model), "DEVICE": "cpu",
                            "OUTPUT": str(out), "OUTPUT_VECTOR": str(vec), **options},
                feedback=feedback)
        assert str(bad.value).startswith(sentence)
        assert feedback.progress() == 0  # nothing predicted
        assert not out.exists() and not vec.exists()


def test_segment_over_an_extent_normalises_as_the_whole_layer(provider, tmp_path):
    """A model that standardises each image must see a part of the layer as in the whole: the
    part's probabilities are the whole layer's there, not those of the part taken alone."""
    from engine.formats.modelfile import load_model, save_model
    rng = np.random.default_rng(3)
    pixels = np.empty((4, 96, 96), np.uint8)  # a dark half and a bright half
    pixels[:, :, :48] = rng.integers(0, 110, (4, 96, 48))
    pixels[:, :, 48:] = rng.integers(120, 255, (4, 96, 48))
    image = write_raster(tmp_path / "image.tif", pixels)
    lm = load_model(make_model(tmp_path / "dataset.rsmodel", base=4, depth=2, tile=64,
                               overlap=16))
    card = {**lm.card, "inputs": {**lm.card["inputs"], "image": {
        **lm.card["inputs"]["image"], "normalisation": "image", "mean": [0.0] * 4,
        "std": [1.0] * 4}}}
    model = save_model(tmp_path / "image.rsmodel", card, lm.network)
    probabilities = {}
    for name, extent in (("whole", None), ("part", "500000,500024,4999952,5000000 [EPSG:32633]")):
        prob = tmp_path / f"{name}_prob.tif"
        run("segment", {"INPUT": str(image), "MODEL": str(model), "DEVICE": "cpu",
                        "EXTENT": extent, "OUTPUT": str(tmp_path / f"{name}.tif"),
                        "OUTPUT_PROBABILITY": str(prob)})
        with rasterio.open(prob) as ds:
            probabilities[name] = ds.read()
    assert probabilities["part"].shape[1:] == (96, 48)
    np.testing.assert_array_equal(probabilities["part"], probabilities["whole"][:, :, :48])


def test_segment_extent_bands_and_engine_errors(provider, scene, tmp_path):
    image, model = scene
    out = tmp_path / "part.tif"
    # 20 m × 10 m at 0.5 m: 40 × 20 pixels from the top-left corner
    extent = "500000,500020,4999990,5000000 [EPSG:32633]"
    run("segment", {"INPUT": str(image), "MODEL": str(model), "DEVICE": "cpu",
                    "EXTENT": extent, "BANDS": "4,3,2,1", "TILE_SIZE": 32, "OVERLAP": 8,
                    "BATCH_SIZE": 2, "OUTPUT": str(out)})
    with rasterio.open(out) as ds:
        assert ds.shape == (20, 40) and ds.bounds.left == 500000 and ds.bounds.top == 5000000
    with pytest.raises(QgsProcessingException, match="model expects 4 bands"):
        run("segment", {"INPUT": str(image), "MODEL": str(model), "BANDS": "1,2",
                        "OUTPUT": str(tmp_path / "bad.tif")})
    with pytest.raises(QgsProcessingException, match="does not exist"):
        run("segment", {"INPUT": str(image), "MODEL": str(tmp_path / "none.rsmodel"),
                        "OUTPUT": str(tmp_path / "bad.tif")})
    assert not (tmp_path / "bad.tif").exists()


def test_segment_reads_at_the_models_gsd_and_says_so(provider, scene, tmp_path):
    image, _ = scene
    model = make_model(tmp_path / "fine.rsmodel", base=4, depth=2, tile=32, overlap=8)
    card = read_card(model)
    from engine.formats.modelfile import load_model, save_model
    net = load_model(model).network
    card["gsd_m"] = 0.25  # the scene is 0.5 m: twice as coarse as this model's data
    save_model(model, card, net)
    lines = []
    feedback = QgsProcessingFeedback()
    feedback.pushInfo = lines.append
    run("segment", {"INPUT": str(image), "MODEL": str(model), "DEVICE": "cpu",
                    "OUTPUT": str(tmp_path / "auto.tif"),
                    "OUTPUT_PROBABILITY": str(tmp_path / "auto_p.tif")}, feedback=feedback)
    assert any("2.0× coarser than the model's training data (0.5 m vs 0.25 m); resampling to "
               "0.25 m" in line for line in lines)
    run("segment", {"INPUT": str(image), "MODEL": str(model), "DEVICE": "cpu", "GSD": "native",
                    "OUTPUT": str(tmp_path / "native.tif"),
                    "OUTPUT_PROBABILITY": str(tmp_path / "native_p.tif")})
    with rasterio.open(tmp_path / "auto_p.tif") as a, rasterio.open(tmp_path / "native_p.tif") as n:
        assert a.shape == n.shape == (96, 96) and a.transform == n.transform
        assert (a.read() != n.read()).any()  # the network saw other pixels
    with pytest.raises(QgsProcessingException, match="must be auto, native or a number"):
        run("segment", {"INPUT": str(image), "MODEL": str(model), "GSD": "fine",
                        "OUTPUT": str(tmp_path / "bad.tif")})


def test_segment_and_detect_change_with_test_time_augmentation(provider, scene, tmp_path):
    from engine.inference.pipeline import predict
    image, model = scene
    for tta in ("none", "flips"):
        run("segment", {"INPUT": str(image), "MODEL": str(model), "DEVICE": "cpu", "TTA": tta,
                        "OUTPUT": str(tmp_path / f"{tta}.tif"),
                        "OUTPUT_PROBABILITY": str(tmp_path / f"{tta}_p.tif")})
    predict(model, image, tmp_path / "engine.tif", probabilities=tmp_path / "engine_p.tif",
            device="cpu", tta="flips")
    with rasterio.open(tmp_path / "flips_p.tif") as f, rasterio.open(tmp_path / "none_p.tif") as n, \
            rasterio.open(tmp_path / "engine_p.tif") as e:
        assert (f.read() == e.read()).all() and (f.read() != n.read()).any()
    cd = make_model(tmp_path / "cd.rsmodel", arch="fcsiamdiff", bands=4, classes=2, base=4,
                    depth=2, tile=64, overlap=16)
    out = tmp_path / "change_d4.tif"
    run("detect_change", {"INPUT_T1": str(image), "INPUT_T2": str(image), "METHOD": "model",
                          "MODEL": str(cd), "DEVICE": "cpu", "TTA": "d4", "OUTPUT": str(out)})
    with rasterio.open(out) as ds:
        assert set(np.unique(ds.read(1)).tolist()) <= {0, 1}


def test_segment_reads_a_layer_gdal_cannot_open_as_a_file(provider, scene, tmp_path):
    image, _ = scene
    source = QgsRasterLayer(str(image), "image")
    params = QgsRasterDataProvider.VirtualRasterParameters()
    params.crs, params.extent = source.crs(), source.extent()
    params.width, params.height = source.width(), source.height()
    params.formula = '"img@1" * 1'
    band = QgsRasterDataProvider.VirtualRasterInputLayers()
    band.name, band.provider, band.uri = "img", "gdal", str(image)
    params.rInputLayers = [band]
    virtual = QgsRasterLayer(QgsRasterDataProvider.encodeVirtualRasterProviderUri(params),
                             "virtual", "virtualraster")
    assert virtual.isValid()
    model = make_model(tmp_path / "gray.rsmodel", bands=1, classes=3, base=4, depth=2)
    out = tmp_path / "virtual.tif"
    run("segment", {"INPUT": virtual, "MODEL": str(model), "DEVICE": "cpu", "OUTPUT": str(out)})
    with rasterio.open(out) as ds:
        assert ds.shape == (96, 96) and ds.transform.a == 0.5


@pytest.mark.parametrize("cancel_after", [0.5, 90.5], ids=["during-predict", "during-vectorize"])
def test_cancel_leaves_no_output_and_loads_nothing(provider, scene, tmp_path, cancel_after):
    image, model = scene
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda p: p > cancel_after and feedback.cancel())
    context = QgsProcessingContext()
    out, vec = tmp_path / "c.tif", tmp_path / "c.gpkg"
    with pytest.raises(QgsProcessingException, match="cancelled"):
        run("segment", {"INPUT": str(image), "MODEL": str(model), "DEVICE": "cpu",
                        "BATCH_SIZE": 1, "OUTPUT": _to_project(out),
                        "OUTPUT_VECTOR": _to_project(vec)}, feedback=feedback, context=context)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert context.layersToLoadOnCompletion() == {}


def _to_project(path):
    from qgis.core import QgsProcessingOutputLayerDefinition
    return QgsProcessingOutputLayerDefinition(str(path), QgsProject.instance())


def test_batch_rows_like_the_batch_dialog(provider, scene, tmp_path, qgis_new_project):
    from processing.gui.Postprocessing import handleAlgorithmResults
    image, model = scene
    second = write_raster(tmp_path / "second.tif",
                          np.random.default_rng(1).integers(0, 255, (4, 50, 70), dtype=np.uint8))
    alg = QgsApplication.processingRegistry().createAlgorithmById("rs_seg:segment")
    for i, (path, shape) in enumerate([(image, (96, 96)), (second, (50, 70))]):
        context, feedback = QgsProcessingContext(), QgsProcessingFeedback()  # one per row
        out = tmp_path / f"batch{i}.tif"
        params = {"INPUT": str(path), "MODEL": str(model), "DEVICE": "cpu",
                  "OUTPUT": _to_project(out)}
        results, ok = alg.run(params, context, feedback)
        assert ok and results["OUTPUT"] == str(out)
        assert handleAlgorithmResults(alg, context, feedback, False, params)
        with rasterio.open(out) as ds:
            assert ds.shape == shape
        assert isinstance(loaded(out).renderer(), QgsPalettedRasterRenderer)


def test_background_task_like_the_algorithm_dialog(provider, scene, tmp_path, qgis_new_project):
    from processing.gui.Postprocessing import handleAlgorithmResults
    image, model = scene
    out = tmp_path / "threaded.tif"
    alg = QgsApplication.processingRegistry().algorithmById("rs_seg:segment")
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    progress, done = [], []
    feedback.progressChanged.connect(progress.append)
    task = QgsProcessingAlgRunnerTask(alg, {"INPUT": str(image), "MODEL": str(model),
                                            "DEVICE": "cpu", "OUTPUT": _to_project(out)},
                                      context, feedback)
    task.executed.connect(lambda ok, res: done.append((ok, res)))
    QgsApplication.taskManager().addTask(task)
    while not done:
        QgsApplication.processEvents()
    assert done[0][0] and max(progress) == pytest.approx(100.0)
    assert handleAlgorithmResults(alg, context, feedback)
    names = [c.label for c in loaded(out).renderer().classes()]
    assert names == [c["name"] for c in read_card(model)["classes"]]


def test_segment_point_reprojects_the_point_and_writes_the_region(provider, scene):
    image, model = scene
    layer = QgsRasterLayer(str(image), "image")
    x, y = 500000.0 + 30.25, 5000000.0 - 20.25  # pixel (60, 40)
    wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
    to_wgs84 = QgsCoordinateTransform(layer.crs(), wgs84, QgsProject.instance())
    p = to_wgs84.transform(QgsPointXY(x, y))
    result = run("segment_point", {"INPUT": str(image), "MODEL": str(model),
                                   "POINT": f"{p.x():.10f},{p.y():.10f} [EPSG:4326]",
                                   "WINDOW": 64, "DEVICE": "cpu", "OUTPUT": "memory:"})
    region = result["OUTPUT"]
    assert isinstance(region, QgsVectorLayer) and region.crs() == layer.crs()
    features = list(region.getFeatures())
    assert len(features) == 1
    f = features[0]
    expected = segment_at(model, image, x, y, window=64, device="cpu")
    assert f.geometry().contains(QgsPointXY(x, y))
    assert f["class_value"] == expected["class_value"] and f["class_name"] == result["CLASS_NAME"]
    assert f["area_m2"] == pytest.approx(expected["area_m2"]) == result["AREA_M2"]
    assert 0 < f["confidence"] <= 1 and f["confidence"] == pytest.approx(result["CONFIDENCE"])
    with pytest.raises(QgsProcessingException, match="outside"):
        run("segment_point", {"INPUT": str(image), "MODEL": str(model),
                              "POINT": "0,0 [EPSG:32633]", "OUTPUT": "memory:"})


def test_vectorize_then_evaluate_against_raster_and_polygons(provider, tmp_path):
    image, labels = labelled_scene(tmp_path, size=64)
    polygons = tmp_path / "labels.gpkg"
    run("vectorize", {"INPUT": str(labels), "MIN_AREA": 0, "OUTPUT": str(polygons)})
    layer = QgsVectorLayer(str(polygons), "labels", "ogr")
    assert layer.featureCount() > 3
    assert [f.name() for f in layer.fields()][1:5] == ["class_value", "class_name", "shape",
                                                       "area_m2"]
    assert sum(f["area_m2"] for f in layer.getFeatures()) == pytest.approx(64 * 64)
    by_raster = run("evaluate", {"PREDICTION": str(labels), "REFERENCE_RASTER": str(labels),
                                 "OUTPUT_REPORT": str(tmp_path / "r.json"),
                                 "OUTPUT_HTML": str(tmp_path / "r.html")})
    assert by_raster["OVERALL_ACCURACY"] == 1.0 and by_raster["MIOU"] == 1.0
    assert "<html" in (tmp_path / "r.html").read_text().lower()
    by_polygons = run("evaluate", {"PREDICTION": str(labels), "REFERENCE_POLYGONS": str(polygons),
                                   "CLASS_FIELD": "class_value",
                                   "OUTPUT_REPORT": str(tmp_path / "p.json")})
    assert by_polygons["OVERALL_ACCURACY"] == 1.0
    assert json.loads((tmp_path / "p.json").read_text())["overall_accuracy"] == 1.0
    with pytest.raises(QgsProcessingException, match="either as REFERENCE_RASTER"):
        run("evaluate", {"PREDICTION": str(labels), "OUTPUT_REPORT": str(tmp_path / "x.json")})


def test_train_segmentation_from_label_rasters_and_from_polygons(provider, tmp_path):
    image, labels = labelled_scene(tmp_path, size=64)
    common = {"INPUT": [str(image)], "EPOCHS": 1, "BATCH_SIZE": 4, "TILE_SIZE": 32,
              "DEVICE": "cpu"}
    r = run("train_segmentation", {**common, "LABELS": [str(labels)], "ARCHITECTURE": "unet",
                                   "OUTPUT_MODEL": str(tmp_path / "unet.rsmodel")})
    card = read_card(r["OUTPUT_MODEL"])
    assert card["architecture"] == "unet" and [c["value"] for c in card["classes"]] == [1, 2, 3]
    assert json.loads(open(r["OUTPUT_HISTORY"]).read())["epochs"]
    assert open(r["OUTPUT_CURVES"], "rb").read(4) == b"\x89PNG"
    polygons = tmp_path / "labels.gpkg"
    run("vectorize", {"INPUT": str(labels), "OUTPUT": str(polygons)})
    r = run("train_segmentation", {**common, "LABEL_POLYGONS": str(polygons),
                                   "CLASS_FIELD": "class_value", "ARCHITECTURE": "mindist",
                                   "OUTPUT_MODEL": str(tmp_path / "mindist.rsmodel")})
    assert r["BEST_METRIC"] > 0.5
    with pytest.raises(QgsProcessingException, match="either as LABELS"):
        run("train_segmentation", {**common, "OUTPUT_MODEL": str(tmp_path / "x.rsmodel")})


def test_train_fine_tunes_from_a_model_with_the_transfer_parameters(provider, tmp_path):
    image, labels = labelled_scene(tmp_path, size=64)
    common = {"INPUT": [str(image)], "LABELS": [str(labels)], "ARCHITECTURE": "unet",
              "EPOCHS": 1, "BATCH_SIZE": 4, "TILE_SIZE": 32, "DEVICE": "cpu"}
    base = run("train_segmentation", {**common, "NORMALISATION": "percentile",
                                      "SENSOR_AUGMENT": False,
                                      "OUTPUT_MODEL": str(tmp_path / "base.rsmodel")})
    assert read_card(base["OUTPUT_MODEL"])["inputs"]["image"]["normalisation"] == "percentile"
    tuned = run("train_segmentation", {**common, "INIT_MODEL": base["OUTPUT_MODEL"],
                                       "ARCHITECTURE": "glcnet",  # the initial model's wins
                                       "INIT_HEAD": "new", "TIME_BUDGET": 600,
                                       "OUTPUT_MODEL": str(tmp_path / "tuned.rsmodel")})
    card = read_card(tuned["OUTPUT_MODEL"])
    training = card["training"]
    assert card["inputs"]["image"]["normalisation"] == "percentile"  # inherited from the base
    assert card["architecture"] == "unet" and card["hparams"] == \
        {**read_card(base["OUTPUT_MODEL"])["hparams"], "num_classes": len(card["classes"])}
    assert training["init"]["from"] == base["OUTPUT_MODEL"] and training["init"]["loaded"] > 0
    assert training["init"]["head"] == "new"
    # no LEARNING_RATE given: the architecture's, scaled down for fine-tuning
    assert training["hyper_parameters"]["lr"] < 1e-3


def test_train_change_then_detect_change_with_it(provider, tmp_path):
    pytest.importorskip("engine.analysis.change")
    rng = np.random.default_rng(3)
    before = rng.integers(40, 60, (3, 64, 64), dtype=np.uint8)
    after = before.copy()
    after[:, 16:40, 20:44] = 220
    label = np.zeros((1, 64, 64), np.uint8)
    label[:, 16:40, 20:44] = 1
    t1 = write_raster(tmp_path / "t1.tif", before, res=1.0)
    t2 = write_raster(tmp_path / "t2.tif", after, res=1.0)
    lab = write_raster(tmp_path / "change.tif", label, res=1.0)
    r = run("train_change", {"INPUT_T1": [str(t1)], "INPUT_T2": [str(t2)], "LABELS": [str(lab)],
                             "ARCHITECTURE": "fcsiamdiff", "EPOCHS": 1, "BATCH_SIZE": 4,
                             "TILE_SIZE": 32, "DEVICE": "cpu",
                             "OUTPUT_MODEL": str(tmp_path / "change.rsmodel")})
    assert read_card(r["OUTPUT_MODEL"])["task"] == "change"
    out = tmp_path / "model_change.tif"
    run("detect_change", {"INPUT_T1": str(t1), "INPUT_T2": str(t2), "METHOD": "model",
                          "MODEL": r["OUTPUT_MODEL"], "DEVICE": "cpu", "OUTPUT": str(out)})
    with rasterio.open(out) as ds:
        assert set(np.unique(ds.read(1)).tolist()) <= {0, 1}
    with pytest.raises(QgsProcessingException, match="no MODEL was given"):
        run("detect_change", {"INPUT_T1": str(t1), "INPUT_T2": str(t2), "METHOD": "model",
                              "OUTPUT": str(tmp_path / "x.tif")})
    # the default method runs the model when one is given, change vector analysis otherwise
    cva = run("detect_change", {"INPUT_T1": str(t1), "INPUT_T2": str(t2), "DEVICE": 1,
                                "OUTPUT": str(tmp_path / "auto_cva.tif")})
    assert (tmp_path / "auto_cva.tif").is_file() and 0 <= cva["CHANGED_FRACTION"] <= 1


def test_detect_change_cva_loads_magenta_change_and_polygons(provider, tmp_path, qgis_new_project):
    pytest.importorskip("engine.analysis.change")
    import processing
    rng = np.random.default_rng(4)
    before = rng.integers(40, 60, (3, 64, 64), dtype=np.uint8)
    after = before.copy()
    after[:, 10:30, 10:30] = 230
    t1 = write_raster(tmp_path / "t1.tif", before, res=1.0)
    t2 = write_raster(tmp_path / "t2.tif", after, res=1.0)
    out, vec = tmp_path / "change.tif", tmp_path / "change.gpkg"
    r = processing.runAndLoadResults("rs_seg:detect_change", {
        "INPUT_T1": str(t1), "INPUT_T2": str(t2), "METHOD": "cva", "DEVICE": "cpu",
        "OUTPUT": str(out), "OUTPUT_VECTOR": str(vec)})
    with rasterio.open(out) as ds:
        change = ds.read(1)
    inside = np.zeros(change.shape, bool)
    inside[10:30, 10:30] = True
    assert change[inside].mean() > 0.9 and change[~inside].mean() < 0.05
    assert r["CHANGED_FRACTION"] == pytest.approx(change.mean())
    renderer = loaded(out).renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    colours = {c.value: c.color.getRgb() for c in renderer.classes()}
    assert colours[0][3] == 0 and colours[1] == (255, 0, 255, 255)
    polygons = loaded(vec)
    assert polygons.featureCount() >= 1 and polygons.renderer().type() == "singleSymbol"


def test_running_without_torch_says_what_to_install(provider, scene, tmp_path, monkeypatch):
    from rs_seg_qgis.processing import base
    monkeypatch.setattr(base, "missing_modules", lambda: ["torch"])
    image, model = scene
    with pytest.raises(QgsProcessingException, match=r"pip install torch==2\.13\.0"):
        run("segment", {"INPUT": str(image), "MODEL": str(model),
                        "OUTPUT": str(tmp_path / "x.tif")})


def test_pretrain_writes_a_pretrained_model(provider, tmp_path, monkeypatch):
    import engine.training.pretrain
    real, calls = engine.training.pretrain.pretrain, []

    def tiny(*args, **kwargs):  # the real engine call, on a network small enough for a test
        calls.append(kwargs)
        return real(*args, hparams={"base": 4, "depth": 2}, **kwargs)
    monkeypatch.setattr(engine.training.pretrain, "pretrain", tiny)
    image, _ = labelled_scene(tmp_path, size=64)
    pre = run("pretrain", {"INPUT": [str(image)], "ARCHITECTURE": "unet", "EPOCHS": 1,
                           "BATCH_SIZE": 2, "TILE_SIZE": 32, "PATCH_SIZE": 8, "PATCH_NUM": 2,
                           "DEVICE": "cpu", "OUTPUT_MODEL": str(tmp_path / "pre.rsmodel")})
    assert read_card(pre["OUTPUT_MODEL"])["task"] == "pretrained" and pre["BEST_LOSS"] >= 0
    assert {k: calls[0][k] for k in ("epochs", "batch_size", "crop", "patch_size", "patch_num",
                                     "device")} == {"epochs": 1, "batch_size": 2, "crop": 32,
                                                    "patch_size": 8, "patch_num": 2,
                                                    "device": "cpu"}


@pytest.mark.parametrize("cancel_at", [1.0, 60.0], ids=["before-an-epoch", "in-epoch-2"])
def test_a_cancelled_training_says_what_it_kept(provider, tmp_path, cancel_at):
    image, labels = labelled_scene(tmp_path, size=64)
    out = tmp_path / "m.rsmodel"
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda p: p > cancel_at and feedback.cancel())
    with pytest.raises(QgsProcessingException) as info:
        run("train_segmentation", {"INPUT": [str(image)], "LABELS": [str(labels)],
                                   "ARCHITECTURE": "unet", "EPOCHS": 2, "BATCH_SIZE": 4,
                                   "TILE_SIZE": 32, "DEVICE": "cpu", "OUTPUT_MODEL": str(out)},
            feedback=feedback)
    if cancel_at < 50:
        assert str(info.value) == "training cancelled by the user; no output was written"
        assert not out.exists()
    else:
        assert str(info.value) == (f"training cancelled by the user; {out} holds the best model "
                                   f"of the finished epochs; 'python -m engine train --resume "
                                   f"{out}.last.ckpt' goes on from the last one")
        assert read_card(out)["training"]["epochs"] == 1
