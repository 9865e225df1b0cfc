"""Click-to-segment: a click (in the canvas CRS) → preview → confirm → a polygon of the right
class in the "Segments" layer; nearby clicks reuse the prediction cache; bad clicks warn."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from qgis.core import (Qgis, QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsPointXY,
                       QgsProject, QgsRasterLayer)
from qgis.gui import QgsMapMouseEvent
from qgis.PyQt.QtCore import QEvent, QPoint, Qt
from qgis.PyQt.QtGui import QKeyEvent

from engine.formats.card import default_card
from engine.formats.modelfile import save_model
from rs_seg_qgis.gui.map_tool import ClickSource, SegmentMapTool, segments_layer
from rs_seg_qgis.tasks import running_tasks, wait_for
from tests.conftest import Pointwise, write_raster

pytestmark = pytest.mark.qgis

ORIGIN_X, ORIGIN_Y, RES = 500000.0, 5000000.0, 0.5


def pixel_centre(col, row):
    return ORIGIN_X + (col + 0.5) * RES, ORIGIN_Y - (row + 0.5) * RES


@pytest.fixture(scope="module")
def halves(tmp_path_factory):
    """A 1-band 64×64 image, bright left half and dark right half, and a 1×1-conv model whose
    class is 'bright' (value 1) above mid-grey and 'dark' (value 2) below: predictable."""
    folder = tmp_path_factory.mktemp("click")
    data = np.full((1, 64, 64), 50, np.uint8)
    data[:, :, :32] = 200
    image = write_raster(folder / "halves.tif", data)
    card = default_card("test-pointwise", 1, 2, class_names=["bright", "dark"], tile_size=64,
                        overlap=16)
    net = Pointwise(1, 2)
    with torch.no_grad():
        net.conv.weight[:] = torch.tensor([1.0, -1.0]).view(2, 1, 1, 1)
        net.conv.bias.zero_()
    model = save_model(folder / "halves.rsmodel", card, net)
    return image, model


@pytest.fixture
def tool(qgis_iface, qgis_new_project, halves):
    image, model = halves
    layer = QgsRasterLayer(str(image), "halves")
    QgsProject.instance().addMapLayer(layer)
    canvas = qgis_iface.mapCanvas()
    canvas.resize(400, 400)
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))  # ≠ the layer's CRS
    to_canvas = QgsCoordinateTransform(layer.crs(), canvas.mapSettings().destinationCrs(),
                                       QgsProject.instance())
    canvas.setExtent(to_canvas.transformBoundingBox(layer.extent()))
    qgis_iface.messageBar().clear_messages()
    map_tool = SegmentMapTool(canvas, qgis_iface, lambda: ClickSource(layer, str(model), "cpu", 64))
    map_tool.to_canvas = to_canvas
    yield map_tool
    wait_for(lambda: running_tasks() == 0, 30)
    map_tool.discard()


def canvas_point(tool, col, row):
    return tool.to_canvas.transform(QgsPointXY(*pixel_centre(col, row)))


def click_and_wait(tool, point):
    tool.click(point)
    assert wait_for(lambda: running_tasks() == 0, 60)


def test_click_previews_then_second_click_adds_the_region(tool):
    click_and_wait(tool, canvas_point(tool, 10, 20))
    preview = tool.preview
    assert preview is not None and not tool.rubber.asGeometry().isEmpty()
    assert preview.result["class_name"] == "bright" and preview.result["class_value"] == 1
    assert preview.result["area_m2"] == pytest.approx(32 * 64 * RES * RES)
    assert segments_layer(create=False) is None  # nothing added before confirmation
    tool.click(canvas_point(tool, 12, 25))  # inside the preview: confirm
    layer = segments_layer(create=False)
    assert layer is not None and layer.name() == "Segments" and layer.featureCount() == 1
    feature = next(layer.getFeatures())
    assert feature["class"] == "bright" and feature["class_value"] == 1
    assert feature["area_m2"] == pytest.approx(512.0)
    assert 0.5 < feature["confidence"] <= 1.0
    x, y = pixel_centre(10, 20)
    assert layer.crs().authid() == "EPSG:32633"
    assert feature.geometry().contains(QgsPointXY(x, y))
    assert not feature.geometry().contains(QgsPointXY(*pixel_centre(40, 20)))
    assert layer.renderer().type() == "categorizedSymbol"
    assert tool.preview is None and tool.rubber.asGeometry().isEmpty()


def test_nearby_click_reuses_the_cache_and_enter_confirms(tool):
    click_and_wait(tool, canvas_point(tool, 10, 20))
    assert tool.preview.result["cached"] is False
    click_and_wait(tool, canvas_point(tool, 50, 30))  # other region, same window
    assert tool.preview.result["cached"] is True
    assert tool.preview.result["class_name"] == "dark"
    tool.keyPressEvent(QKeyEvent(QEvent.KeyPress, Qt.Key_Return, Qt.NoModifier))
    layer = segments_layer(create=False)
    assert [f["class"] for f in layer.getFeatures()] == ["dark"]
    click_and_wait(tool, canvas_point(tool, 5, 5))
    tool.keyPressEvent(QKeyEvent(QEvent.KeyPress, Qt.Key_Escape, Qt.NoModifier))
    assert tool.preview is None and layer.featureCount() == 1  # Esc discarded it
    assert segments_layer(create=False) is layer  # one Segments layer, kept


def test_a_real_mouse_event_segments(tool):
    canvas = tool.canvas()
    pixel = canvas.getCoordinateTransform().transform(canvas_point(tool, 20, 10))
    event = QgsMapMouseEvent(canvas, QEvent.MouseButtonRelease,
                             QPoint(round(pixel.x()), round(pixel.y())), Qt.LeftButton)
    tool.canvasReleaseEvent(event)
    assert wait_for(lambda: running_tasks() == 0, 60)
    assert tool.preview is not None and tool.preview.result["class_name"] == "bright"


def test_click_outside_the_raster_warns(tool):
    outside = tool.to_canvas.transform(QgsPointXY(ORIGIN_X - 100, ORIGIN_Y + 100))
    tool.click(outside)
    assert running_tasks() == 0 and tool.preview is None
    messages = tool.iface.messageBar().get_messages(Qgis.Warning)
    assert messages and "outside layer 'halves'" in messages[-1]


def test_click_without_model_warns(tool, halves):
    tool.source = lambda: ClickSource(None, str(halves[1]))
    tool.click(QgsPointXY(0, 0))
    assert "Choose the raster layer" in tool.iface.messageBar().get_messages(Qgis.Warning)[-1]


def _sam_file(tmp_path):
    """A tiny SAM checkpoint whose masks cover every pixel (the whole window is the object)."""
    from tests.engine.weights.published import random_tensors, sam_shapes
    from engine.models.sam import CONFIGS
    c = CONFIGS["tiny"]
    state = random_tensors(sam_shapes(c.dim, c.depth, c.heads, c.global_blocks))
    up = "mask_decoder.output_upscaling.3."
    state[up + "weight"].zero_()
    state[up + "bias"].fill_(1.0)
    for m in range(4):
        key = f"mask_decoder.output_hypernetworks_mlps.{m}.layers.2."
        state[key + "weight"].zero_()
        state[key + "bias"].fill_(1.0)
    weights = tmp_path / "sam_tiny.pth"
    torch.save(state, weights)
    return weights


def test_sam_mode_adds_an_object_without_a_model(tool, halves, tmp_path):
    """Objects (SAM) mode: a SAM checkpoint instead of a model; weights that call every pixel
    the object give the whole 64×64 window as one 'object (SAM)' polygon."""
    weights = _sam_file(tmp_path)
    layer = tool.source().layer
    tool.source = lambda: ClickSource(layer, "", "cpu", 64, mode="sam", sam_weights=str(weights))
    click_and_wait(tool, canvas_point(tool, 10, 20))
    assert tool.preview is not None
    assert tool.preview.result["class_name"] == "object (SAM)"
    assert tool.preview.result["area_m2"] == pytest.approx(64 * 64 * RES * RES)
    feature = tool.confirm()
    assert feature["class"] == "object (SAM)"
    tool.source = lambda: ClickSource(layer, "", "cpu", 64, mode="sam")
    tool.click(canvas_point(tool, 10, 20))
    assert "SAM checkpoint" in tool.iface.messageBar().get_messages(Qgis.Warning)[-1]


def test_click_preview_is_a_filled_translucent_polygon_with_a_strong_outline(tool):
    click_and_wait(tool, canvas_point(tool, 10, 20))
    fill, stroke = tool.rubber.fillColor(), tool.rubber.strokeColor()
    assert 0 < fill.alpha() < 255 and stroke.alpha() == 255
    assert tool.rubber.width() >= 3
    assert stroke.lightness() < fill.lightness()  # a darker edge than the fill


def test_sam_hover_shows_the_mask_under_the_cursor_once_the_window_is_encoded(tool, tmp_path):
    weights = _sam_file(tmp_path)
    layer = tool.source().layer
    tool.source = lambda: ClickSource(layer, "", "cpu", 64, mode="sam", sam_weights=str(weights))
    assert not tool.hover_at(canvas_point(tool, 30, 30))  # nothing encoded yet: no hover
    assert tool.hover_rubber.asGeometry().isEmpty()
    click_and_wait(tool, canvas_point(tool, 10, 20))  # the click encodes the window
    tool.discard()
    shown = []
    tool.hover.done.connect(lambda request, result: shown.append(result))
    canvas = tool.canvas()
    for col in (20, 25, 30):  # a burst of moves: the latest wins, older ones may be dropped
        pixel = canvas.getCoordinateTransform().transform(canvas_point(tool, col, 30))
        tool.canvasMoveEvent(QgsMapMouseEvent(canvas, QEvent.MouseMove,
                                              QPoint(round(pixel.x()), round(pixel.y()))))
    assert wait_for(lambda: shown and shown[-1] is not None
                    and not tool.hover_rubber.asGeometry().isEmpty(), 30)
    assert shown[-1]["cached"] and shown[-1]["area_m2"] == pytest.approx(64 * 64 * RES * RES)
    assert tool.hover_rubber.asGeometry().area() > 0
    outside = tool.to_canvas.transform(QgsPointXY(ORIGIN_X - 100, ORIGIN_Y + 100))
    assert not tool.hover_at(outside) and tool.hover_rubber.asGeometry().isEmpty()
    tool.click(canvas_point(tool, 30, 30))  # the click fixes what the hover showed
    assert wait_for(lambda: running_tasks() == 0, 60)
    assert tool.preview is not None and tool.preview.result["class_name"] == "object (SAM)"
