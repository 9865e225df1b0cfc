"""Turn `make demo`'s outputs into a QGIS project and a map picture, headless.

Usage: python scripts/demo_project.py build/demo

Writes ``<demo>/demo.qgz``: the held-out scene's two dates and reference labels ("Inputs"),
the U-Net segmentation (classes and polygons) and the change results (change, polygons, from-to)
in groups, styled with the plugin's own styling functions (rs_seg_qgis.layers); and
``<demo>/demo.png``: three panels rendered by QGIS (image, classes, change over date 2) with a
class legend, drawn with QgsMapRendererParallelJob on the offscreen platform.
"""
from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qgis.core import (QgsApplication, QgsContrastEnhancement,  # noqa: E402
                       QgsHueSaturationFilter, QgsLayerTreeGroup, QgsMapLayer,
                       QgsMapRendererParallelJob, QgsMapSettings, QgsMultiBandColorRenderer,
                       QgsProject, QgsRasterLayer, QgsRasterMinMaxOrigin, QgsRectangle,
                       QgsReferencedRectangle,
                       QgsVectorLayer)
from qgis.PyQt.QtCore import QPointF, QRectF, QSize, Qt  # noqa: E402
from qgis.PyQt.QtGui import QColor, QFont, QImage, QPainter, QPen  # noqa: E402

PANEL = 560          # pixels per map panel
MARGIN = 24
TITLE_H = 64
CAPTION_H = 34
LEGEND_H = 78
BACKGROUND = QColor(250, 250, 248)
INK = QColor(40, 40, 40)
MUTED = QColor(110, 110, 110)


def rgb_layer(path: Path, name: str) -> QgsRasterLayer:
    """A true-colour view (bands 1-3) stretched on the 2–98 % cumulative cut."""
    layer = QgsRasterLayer(str(path), name)
    if not layer.isValid():
        raise SystemExit(f"cannot open {path}")
    renderer = QgsMultiBandColorRenderer(layer.dataProvider(), 1, 2, 3)
    layer.setRenderer(renderer)
    layer.setContrastEnhancement(QgsContrastEnhancement.StretchToMinimumMaximum,
                                 QgsRasterMinMaxOrigin.CumulativeCut)
    return layer


def raster(path: Path, name: str, style=None, opacity: float = 1.0) -> Optional[QgsRasterLayer]:
    if not path.is_file():
        return None
    layer = QgsRasterLayer(str(path), name)
    if not layer.isValid():
        raise SystemExit(f"cannot open {path}")
    if style is not None:
        style(layer)
    layer.setOpacity(opacity)
    return layer


def vector(path: Path, name: str, style=None) -> Optional[QgsVectorLayer]:
    if not path.is_file():
        return None
    layer = QgsVectorLayer(str(path), name, "ogr")
    if not layer.isValid():
        raise SystemExit(f"cannot open {path}")
    if style is not None:
        style(layer)
    return layer


def add_group(project: QgsProject, name: str, layers: Sequence[Optional[QgsMapLayer]],
              visible: Sequence[bool], expanded: bool = True) -> QgsLayerTreeGroup:
    """Group ``name`` (appended below the earlier ones) with the existing ``layers``."""
    group = project.layerTreeRoot().addGroup(name)
    for layer, on in zip(layers, visible):
        if layer is None:
            continue
        project.addMapLayer(layer, False)
        group.addLayer(layer).setItemVisibilityChecked(on)
    group.setExpanded(expanded)
    return group


def build_project(demo: Path) -> Dict[str, QgsMapLayer]:
    """Load and style the demo outputs into the current project; returns the layers by role."""
    from rs_seg_qgis import layers as styles
    scene = demo / "scene-test"
    project = QgsProject.instance()
    project.clear()
    project.setTitle("RS Seg demo — held-out sample scene")
    t1, t2 = rgb_layer(scene / "t1.tif", "Date 1 (t1)"), rgb_layer(scene / "t2.tif", "Date 2 (t2)")
    project.setCrs(t1.crs())
    classes = styles.raster_classes(str(demo / "unet-classes.tif"))
    out = {
        "t1": t1, "t2": t2,
        "labels": raster(scene / "labels.tif", "Reference labels",
                         functools.partial(styles.style_class_raster, classes=classes)),
        "classes": raster(demo / "unet-classes.tif", "Classes", styles.style_class_raster),
        "class_polygons": vector(demo / "unet-classes.gpkg", "Class polygons",
                                 functools.partial(styles.style_class_polygons, classes=classes)),
        "mindist": raster(demo / "mindist-classes.tif", "Classes (minimum distance baseline)",
                          styles.style_class_raster),
        "change": raster(demo / "change.tif", "Change", styles.style_change_raster),
        "change_polygons": vector(demo / "change.gpkg", "Change polygons",
                                  styles.style_change_polygons),
        "from_to": raster(demo / "from-to.tif", "From-to classes", styles.style_from_to_raster),
        "change_probability": raster(demo / "change-probability.tif", "Change probability",
                                     styles.style_probability_raster),
    }
    add_group(project, "Change t1 → t2 — CVA + U-Net from-to",
              [out["change_polygons"], out["change"], out["from_to"], out["change_probability"]],
              [True, False, False, False])
    add_group(project, "Segment t1 — U-Net",
              [out["class_polygons"], out["classes"], out["mindist"]], [False, True, False])
    add_group(project, "Inputs", [out["labels"], t2, t1], [False, False, True], expanded=False)
    # without a saved view QGIS opens a headless-written project at 1:1, showing nothing
    extent = QgsRectangle(t1.extent())
    extent.scale(1.05)
    project.viewSettings().setDefaultViewExtent(QgsReferencedRectangle(extent, t1.crs()))
    return out


def grey_view(layer: QgsRasterLayer) -> QgsRasterLayer:
    """A greyscale copy of an RGB layer for the picture only, so red changes stand out."""
    copy = layer.clone()
    copy.hueSaturationFilter().setGrayscaleMode(QgsHueSaturationFilter.GrayscaleLuminosity)
    copy.brightnessFilter().setContrast(-20)
    return copy


def render(layers: List[QgsMapLayer], extent: QgsRectangle, crs, size: int) -> QImage:
    """One map panel, rendered by QGIS's parallel renderer (top layer first in ``layers``)."""
    settings = QgsMapSettings()
    settings.setLayers([lyr for lyr in layers if lyr is not None])
    settings.setDestinationCrs(crs)
    settings.setExtent(extent)
    settings.setOutputSize(QSize(size, size))
    settings.setBackgroundColor(QColor(255, 255, 255))
    settings.setFlag(QgsMapSettings.Antialiasing, True)
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    return job.renderedImage()


def _font(size: int, bold: bool = False) -> QFont:
    font = QFont("DejaVu Sans")
    font.setPixelSize(size)
    font.setBold(bold)
    return font


def accuracy_line(demo: Path) -> str:
    """'U-Net OA 0.91, mIoU 0.72 · change F1 0.80' from the evaluation reports, when present."""
    parts = []
    try:
        r = json.loads((demo / "unet-accuracy.json").read_text())
        parts.append(f"U-Net on the held-out scene: OA {r['overall_accuracy']:.2f}, "
                     f"mIoU {r['miou']:.2f}")
    except (OSError, ValueError, KeyError):
        pass
    try:
        r = json.loads((demo / "change-accuracy.json").read_text())
        change = next((c for c in r.get("per_class", []) if c.get("name") == "change"), {})
        f1 = change.get("f1", (r.get("change") or {}).get("f1"))
        if isinstance(f1, (int, float)):
            parts.append(f"change (CVA) F1 {f1:.2f}")
    except (OSError, ValueError, AttributeError):
        pass
    return " · ".join(parts)


def compose(demo: Path, out: Dict[str, QgsMapLayer], png: Path) -> None:
    """Three panels side by side with titles, captions and a legend."""
    from rs_seg_qgis import layers as styles
    t1 = out["t1"]
    extent = QgsRectangle(t1.extent())
    extent.scale(1.02)
    crs = t1.crs()
    panels = [
        ("Date 1 — true colour", [t1]),
        ("U-Net classes", [out["classes"]]),
        ("Change polygons, date 1 → 2 (date 2 in grey)",
         [out["change_polygons"], grey_view(out["t2"])]),
    ]
    width = MARGIN + len(panels) * (PANEL + MARGIN)
    height = TITLE_H + CAPTION_H + PANEL + LEGEND_H + MARGIN
    image = QImage(width, height, QImage.Format_ARGB32)
    image.fill(BACKGROUND)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.Antialiasing)
    painter.setRenderHint(QPainter.TextAntialiasing)
    painter.setPen(INK)
    painter.setFont(_font(24, bold=True))
    px = t1.width()
    gsd = t1.rasterUnitsPerPixelX()
    painter.drawText(QRectF(MARGIN, 10, width - 2 * MARGIN, 32), Qt.AlignLeft | Qt.AlignVCenter,
                     f"RS Seg demo — held-out sample scene ({px}×{t1.height()} px at {gsd:g} m)")
    painter.setPen(MUTED)
    painter.setFont(_font(15))
    painter.drawText(QRectF(MARGIN, 40, width - 2 * MARGIN, 22), Qt.AlignLeft | Qt.AlignVCenter,
                     accuracy_line(demo) or "QGIS rendering of the demo outputs")
    for i, (title, panel_layers) in enumerate(panels):
        x = MARGIN + i * (PANEL + MARGIN)
        painter.setPen(INK)
        painter.setFont(_font(18, bold=True))
        painter.drawText(QRectF(x, TITLE_H, PANEL, CAPTION_H), Qt.AlignLeft | Qt.AlignVCenter,
                         title)
        painter.drawImage(QPointF(x, TITLE_H + CAPTION_H), render(panel_layers, extent, crs,
                                                                   PANEL))
        painter.setPen(QPen(QColor(170, 170, 170), 1))
        painter.setBrush(Qt.NoBrush)
        painter.drawRect(QRectF(x, TITLE_H + CAPTION_H, PANEL, PANEL))
    # legend: the model's classes, then change
    grey = QPen(QColor(90, 90, 90), 1)
    entries = [(c["name"], QColor(*[int(v) for v in c["color"][:3]]), grey)
               for c in styles.raster_classes(str(demo / "unet-classes.tif"))]
    # drawn as the change polygons are: their own symbol's fill and outline
    symbol = out["change_polygons"].renderer().symbol()
    fill = QColor(symbol.color())
    fill.setAlphaF(fill.alphaF() * symbol.opacity())
    entries.append(("change (polygons)", fill,
                    QPen(symbol.symbolLayer(0).strokeColor(), 2)))
    painter.setFont(_font(16))
    x, y = MARGIN, TITLE_H + CAPTION_H + PANEL + 24
    for i, (name, fill, outline) in enumerate(entries):
        text_w = painter.fontMetrics().horizontalAdvance(name)
        if i == len(entries) - 1:
            x += 40  # set the change entry apart from the classes
        if x + 26 + text_w > width - MARGIN:
            x, y = MARGIN, y + 28
        painter.setPen(outline)
        painter.setBrush(fill)
        painter.drawRect(QRectF(x, y, 20, 20))
        painter.setPen(INK)
        painter.drawText(QRectF(x + 28, y - 2, text_w + 4, 24), Qt.AlignLeft | Qt.AlignVCenter,
                         name)
        x += 28 + text_w + 30
    painter.end()
    if not image.save(str(png), "PNG"):
        raise SystemExit(f"cannot write {png}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path, help="the folder `make demo` wrote (build/demo)")
    parser.add_argument("--project", type=Path, default=None, help="default: <demo>/demo.qgz")
    parser.add_argument("--png", type=Path, default=None, help="default: <demo>/demo.png")
    args = parser.parse_args(argv)
    demo = args.demo.resolve()
    if not (demo / "unet-classes.tif").is_file():
        print(f"{demo} has no demo outputs; run `make demo` first", file=sys.stderr)
        return 1
    qgz = (args.project or demo / "demo.qgz").resolve()
    png = (args.png or demo / "demo.png").resolve()
    app = QgsApplication([], False)
    app.initQgis()
    try:
        out = build_project(demo)
        project = QgsProject.instance()
        if not project.write(str(qgz)):
            print(f"cannot write {qgz}: {project.error()}", file=sys.stderr)
            return 1
        compose(demo, out, png)
        print(f"wrote {qgz}\nwrote {png}")
    finally:
        # no layer may outlive the application (exitQgis with live layers segfaults)
        out = None
        QgsProject.instance().clear()
        gc.collect()
        app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
