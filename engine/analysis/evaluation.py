"""``python -m engine evaluate``: accuracy of a class raster against reference data.

The reference is a class raster (aligned onto the prediction's grid on the fly, nearest
neighbour) or labelled polygons (rasterised block by block).  Both are streamed by blocks into one
confusion matrix; the report has OA, kappa, per-class IoU/F1, mIoU, mF1 and the area-based
estimates of Olofsson et al. (2014), as JSON and optionally as a self-contained HTML page.
"""
from __future__ import annotations

import argparse
import contextlib
import html
import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import transform as window_transform

from ..io.rasters import CLASS_NODATA, bounded_gdal_cache, check_overlap, open_raster, same_grid, warp_to_grid
from ..jobs import (CancelledFn, InputError, Job, ProgressFn, atomic_output, check_outputs,
                   job_outputs)
from .metrics import area_based_accuracy, confusion_matrix, scores

COMMAND = "evaluate"
HELP = "accuracy report of a class raster against a reference raster or polygons"


def prediction_classes(ds: rasterio.io.DatasetReader) -> Dict[int, str]:
    """Class value → name of a class raster (from its RS Seg tags, else the values found)."""
    tags = ds.tags(1)
    if "RS_SEG_CLASSES" in tags:
        return {int(c["value"]): str(c["name"]) for c in json.loads(tags["RS_SEG_CLASSES"])}
    return {int(k[6:]): v for k, v in tags.items() if k.startswith("CLASS_") and k[6:].isdigit()}


@job_outputs
def evaluate(prediction: str | Path, reference: str | Path, report: str | Path,
             html_report: Optional[str | Path] = None, class_field: Optional[str] = None,
             ignore_value: Optional[int] = None, progress: Optional[ProgressFn] = None,
             cancelled: Optional[CancelledFn] = None) -> Dict[str, Any]:
    """Compare ``prediction`` with ``reference``; write the JSON (and HTML) report."""
    job = Job(progress, cancelled)
    check_outputs({"--report": report, "--html": html_report}, [prediction, reference])
    with contextlib.ExitStack() as stack:
        stack.enter_context(bounded_gdal_cache())
        pred = stack.enter_context(open_raster(prediction))
        if pred.count != 1 or not np.issubdtype(np.dtype(pred.dtypes[0]), np.integer):
            raise InputError(f"{prediction} is not a class raster (one integer band)")
        names = prediction_classes(pred)
        is_vector = Path(reference).suffix.lower() not in (".tif", ".tiff", ".vrt", ".img") \
            and class_field is not None
        if is_vector:
            ref_reader, ref_names = _polygon_reference(reference, class_field, pred, names)
        else:
            if class_field is not None:
                raise InputError("--class-field applies to polygon references only")
            ref_reader, ref_names = _raster_reference(reference, pred, stack)
        full = np.zeros((256, 256), dtype=np.int64)  # raw values; reduced to classes below
        mapped_full = np.zeros(256, dtype=np.int64)
        windows = [w for _, w in pred.block_windows(1)]
        pred_nodata = pred.nodata if pred.nodata is not None else CLASS_NODATA
        for n, win in enumerate(windows):
            job.check()
            p = pred.read(1, window=win).astype(np.int64)
            p[(p == pred_nodata) | (p < 0) | (p > 255)] = -1
            mapped_full += np.bincount(p[p >= 0].ravel(), minlength=256)[:256]
            r = ref_reader(win)
            r[(r < 0) | (r > 255)] = -1
            if ignore_value is not None:
                r[r == ignore_value] = -1
            full += confusion_matrix(r, p, 256, valid=(r >= 0) & (p >= 0))
            job.report((n + 1) / len(windows), f"evaluate: block {n + 1}/{len(windows)}")
        seen = set(np.nonzero(full.sum(0) + full.sum(1))[0].tolist())
        values = sorted(v for v in set(names) | set(ref_names) | seen if 0 <= v < 256)
        labels = {v: names.get(v) or ref_names.get(v) or f"class {v}" for v in values}
        matrix = full[np.ix_(values, values)]
        mapped = mapped_full[values]
        pixel_area = abs(pred.transform.a * pred.transform.e)
        crs = str(pred.crs) if pred.crs else None
    if matrix.sum() == 0:
        raise InputError("the prediction and the reference share no labelled pixels; check that "
                         "they cover the same area and that the reference has classes")
    class_names = [labels[v] for v in values]
    result = {"prediction": str(prediction), "reference": str(reference), "crs": crs,
              "classes": [{"index": i, "value": v, "name": labels[v]} for i, v in enumerate(values)],
              "confusion_matrix": matrix.tolist(), "matrix_rows": "reference", **scores(matrix, class_names)}
    try:
        result["area_based"] = area_based_accuracy(matrix, mapped_area=mapped, pixel_area=pixel_area,
                                                   class_names=class_names)
    except InputError as exc:
        result["area_based"] = {"unavailable": str(exc)}
    with atomic_output(report) as tmp:
        tmp.write_text(json.dumps(result, indent=1))
    if html_report is not None:
        with atomic_output(html_report) as tmp:
            tmp.write_text(render_html(result))
    return result


def _raster_reference(path: str | Path, pred: rasterio.io.DatasetReader,
                      stack: contextlib.ExitStack):
    ds = stack.enter_context(open_raster(path))
    if ds.count != 1:
        raise InputError(f"reference raster {path} must have one band of class values")
    names = prediction_classes(ds)
    if not same_grid(ds, pred):
        if ds.crs is None or pred.crs is None:
            raise InputError(f"{path} is not on the prediction's grid and has no CRS")
        check_overlap(pred, ds, str(path))
        ds = stack.enter_context(warp_to_grid(ds, pred.crs, pred.transform, pred.width,
                                              pred.height, Resampling.nearest))
    nodata = ds.nodata

    def read(win) -> np.ndarray:
        r = ds.read(1, window=win).astype(np.int64)
        if nodata is not None:
            r[r == int(nodata)] = -1
        return r
    return read, names


def _polygon_reference(path: str | Path, field: str, pred: rasterio.io.DatasetReader,
                       pred_names: Dict[int, str]) -> Tuple[Any, Dict[int, str]]:
    """Rasterise polygons per block; names in the field match the prediction's class names."""
    from ..io.vectors import read_polygon_labels, rasterize_polygons
    labels = read_polygon_labels(path, field)
    by_name = {n.lower(): v for v, n in pred_names.items()}
    remap = np.full(256, -1, dtype=np.int64)
    names: Dict[int, str] = {}
    spare = iter(v for v in range(254, -1, -1) if v not in pred_names)
    for c in labels.classes:
        if labels.kind == "string":
            target = by_name.get(str(c["name"]).lower())
            target = target if target is not None else next(spare)
        else:
            target = int(c["value"])
        remap[int(c["value"])] = target
        names[target] = str(c["name"]) if labels.kind == "string" else pred_names.get(target, str(c["name"]))

    def read(win) -> np.ndarray:
        burned = rasterize_polygons(path, field, labels, pred.crs,
                                    window_transform(win, pred.transform), int(win.width),
                                    int(win.height), fill=255)
        return remap[burned]
    return read, names


def _cell(value: float, vmax: float) -> str:
    shade = 0 if vmax == 0 else value / vmax
    colour = f"rgba(33, 102, 172, {0.08 + 0.85 * shade:.3f})"
    text = "#fff" if shade > 0.55 else "#111"
    return f'<td style="background:{colour};color:{text}">{int(value)}</td>'


def render_html(result: Dict[str, Any]) -> str:
    """A self-contained HTML report: summary, confusion-matrix heat map, per-class bars."""
    names = [c["name"] for c in result["classes"]]
    m = np.asarray(result["confusion_matrix"])
    row_norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = []
    for i, n in enumerate(names):
        cells = "".join(_cell(m[i, j], m[i].max() if row_norm[i].max() else 0) for j in range(len(names)))
        rows.append(f"<tr><th>{html.escape(n)}</th>{cells}<td>{int(m[i].sum())}</td></tr>")
    bars = []
    for c in result["per_class"]:
        for key in ("iou", "f1"):
            v = c.get(key)
            width = 0 if v is None else round(300 * v)
            label = "n/a" if v is None else f"{v:.3f}"
            bars.append(f'<tr><td>{html.escape(c["name"])}</td><td>{key.upper()}</td><td>'
                        f'<div class="bar {key}" style="width:{width}px"></div></td><td>{label}</td></tr>')
    area_rows = []
    ab = result.get("area_based", {})
    for c in ab.get("per_class", []):
        def f(v, fmt="{:.3f}"):
            return "n/a" if v is None else fmt.format(v)
        area_rows.append(
            f"<tr><td>{html.escape(c['name'])}</td><td>{f(c['mapped_area'], '{:,.0f}')}</td>"
            f"<td>{f(c['estimated_area'], '{:,.0f}')} ± {f(c['ci95_area'], '{:,.0f}')}</td>"
            f"<td>{f(c['users_accuracy'])} ± {f(c['users_ci95'])}</td>"
            f"<td>{f(c['producers_accuracy'])} ± {f(c['producers_ci95'])}</td></tr>")
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>RS Seg accuracy report</title>
<style>body{{font-family:sans-serif;margin:2em;color:#111}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}} th{{background:#f4f4f4}}
.bar{{height:12px}} .iou{{background:#2166ac}} .f1{{background:#67a9cf}} caption{{text-align:left;font-weight:bold}}</style>
</head><body><h1>Accuracy report</h1>
<p>Prediction <code>{html.escape(result['prediction'])}</code> against reference
<code>{html.escape(result['reference'])}</code> ({result['pixels']:,} pixels compared).</p>
<table><tr><th>overall accuracy</th><td>{fmt(result['overall_accuracy'])}</td></tr>
<tr><th>Cohen's kappa</th><td>{fmt(result['kappa'])}</td></tr>
<tr><th>mIoU</th><td>{fmt(result['miou'])}</td></tr><tr><th>mean F1</th><td>{fmt(result['mf1'])}</td></tr></table>
<table><caption>Confusion matrix (rows: reference, columns: prediction; shading per row)</caption>
<tr><th></th>{head}<th>total</th></tr>{''.join(rows)}</table>
<table><caption>Per-class scores</caption>{''.join(bars)}</table>
<table><caption>Area-based accuracy (Olofsson et al. 2014; areas in CRS units², 95 % CI)</caption>
<tr><th>class</th><th>mapped area</th><th>estimated area</th><th>user's accuracy</th><th>producer's accuracy</th></tr>
{''.join(area_rows)}</table>
<p>Overall accuracy (area-weighted): {fmt(ab.get('overall_accuracy'))} ± {fmt(ab.get('overall_ci95'))}</p>
</body></html>"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``evaluate``."""
    p.add_argument("--prediction", required=True, help="class raster to assess")
    p.add_argument("--reference", required=True, help="reference class raster or polygons")
    p.add_argument("--class-field", help="class attribute of polygon references")
    p.add_argument("--ignore-value", type=int, help="reference value that never counts")
    p.add_argument("--report", required=True, help="JSON report to write")
    p.add_argument("--html", help="optional HTML report")


def run(args: argparse.Namespace, progress=None) -> None:
    """Run ``evaluate`` and print the headline figures."""
    r = evaluate(args.prediction, args.reference, args.report, html_report=args.html,
                 class_field=args.class_field, ignore_value=args.ignore_value, progress=progress)
    print(f"OA {r['overall_accuracy']:.4f}  kappa {r['kappa'] or 0:.4f}  mIoU {r['miou'] or 0:.4f}  "
          f"mF1 {r['mf1'] or 0:.4f}  ({r['pixels']:,} pixels)")
    for c in r["per_class"]:
        iou = "n/a" if c["iou"] is None else f"{c['iou']:.4f}"
        print(f"  {c['name']:20s} IoU {iou}")
    print(f"wrote {args.report}" + (f" and {args.html}" if args.html else ""))
