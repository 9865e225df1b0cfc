"""`make bench-polygons`: building polygons raw vs simplified vs regularised (issue 28).

On the real building labels in ../shared/data (ISPRS Potsdam 5 cm and Vaihingen 9 cm crops,
LoveDA 0.3 m tiles, the Swiss LiDAR building class at 0.5 m) the reference footprints are the
label's building pixels.  Each label raster is vectorised three ways with the engine:

  raw          pixel outlines (``--as-is all``)
  simplified   Douglas-Peucker per polygon at the tolerance (``--simplify``)
  regularised  ``--regularize building`` at the same tolerance

and scored against the reference: IoU of the building area (polygon IoU against the label's
pixel outline, and pixel IoU: the polygons burnt back onto the label grid), vertex count, share of right
angles (corners within 10° of 90°), boundary F-score (share of each boundary within one
tolerance of the other's), and the total area where output polygons overlap each other, at
tolerances of 0.25, 0.5 and 1 m (those not below the pixel size).  A prediction-like input (the
label blurred and thresholded with noise: ragged borders, specks) is scored the same way
against the clean reference ("noisy").

What the staircase costs: every score carries the polygons' loss against their *own* pixel
staircase (``staircase_loss``); per set, the ``rectangle_floor`` (each building as its minimum
rotated rectangle against that rectangle's staircase: what perfect straight walls of these sizes
and angles lose) and the ``fitted_curve`` (least-squares walls at 0.5-2 px: IoU loss against
vertex cut).

The user's case (``--only predicted``): a U-Net (base 16, ``--epochs`` epochs of 96 windows of
128 px, one thread) is trained with the engine's ``train`` on one part of a labelled scene
(building vs other) and ``predict`` runs on the held-out part; the prediction's building polygons
are scored against that part's label (PREDICTED lists the scenes and splits).

Peak memory of vectorize (buildings regularised, vegetation smoothed, and as plain pixel
outlines) on synthetic scenes of growing size checks that it stays flat.

Results go to bench/results/polygons.json, polygons-predicted.json and polygons-memory.json;
record them in docs/benchmarks.md with the machine.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from osgeo import ogr  # noqa: E402
from rasterio.features import rasterize, shapes  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402
from rasterio.windows import Window, transform as window_transform  # noqa: E402
from scipy import ndimage  # noqa: E402
from shapely import wkb  # noqa: E402
from shapely.affinity import affine_transform  # noqa: E402
from shapely.geometry import box, shape  # noqa: E402
from shapely.ops import unary_union  # noqa: E402

from bench.run import machine  # noqa: E402
from engine.analysis.vectorize import vectorize  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
WORK = ROOT / "build" / "bench-polygons"
RESULTS = ROOT / "bench" / "results"
BUILDING = "building"
TOLERANCES_M = (0.25, 0.5, 1.0)  # those below the pixel size are skipped
# (name, label file, building value, pixel size m)
SETS = [("potsdam", "isprs-loveda/potsdam/ann_dir/2_10_0_0_512_512.png", 2, 0.05),
        ("vaihingen", "isprs-loveda/vaihingen/ann_dir/area1_0_0_512_512.png", 2, 0.09),
        ("loveda-0", "isprs-loveda/loveda/ann_dir/0.png", 2, 0.3),
        ("loveda-1", "isprs-loveda/loveda/ann_dir/1.png", 2, 0.3),
        ("swiss-lidar", "swiss-ortho/lidar/derived_lidar_class_0.5m.tif", 6, 0.5)]


def class_raster(name: str, labels: np.ndarray, value: int, pixel: float,
                 transform=None, crs="EPSG:2056", ignore: Optional[int] = None) -> Path:
    """A GeoTIFF of building (1) vs other (0), named so that --regularize building finds it;
    label value ``ignore`` becomes nodata (255)."""
    out = WORK / f"{name}.tif"
    arr = (labels == value).astype(np.uint8)
    if ignore is not None:
        arr[labels == ignore] = 255
    classes = [{"value": 0, "name": "other", "color": [200, 200, 200]},
               {"value": 1, "name": BUILDING, "color": [200, 0, 0]}]
    with rasterio.open(out, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0],
                       count=1, dtype="uint8", nodata=255, crs=crs,
                       transform=transform or from_origin(2600000.0, 1200000.0, pixel, pixel)
                       ) as dst:
        dst.write(arr, 1)
        dst.update_tags(1, RS_SEG_CLASSES=json.dumps(classes),
                        **{f"CLASS_{c['value']}": c["name"] for c in classes})
    return out


def noisy(mask: np.ndarray, pixel: float, seed: int = 0) -> np.ndarray:
    """A prediction-like building mask: blurred over ~0.5 m, thresholded with noise."""
    rng = np.random.default_rng(seed)
    soft = ndimage.gaussian_filter(mask.astype(np.float32), max(0.5 / pixel, 1.0))
    return (soft + rng.normal(0, 0.15, mask.shape) > 0.5).astype(np.uint8)


def buildings(path: Path) -> List:
    ds = ogr.Open(str(path))
    return [wkb.loads(bytes(f.GetGeometryRef().ExportToWkb())) for f in ds.GetLayer(0)
            if f["class_name"] == BUILDING]


class Reference:
    """The reference footprints: the label's building pixels, as polygons (``outline``) and as
    the pixel mask itself (``mask`` on the raster's grid ``transform``)."""

    def __init__(self, path: Path) -> None:
        with rasterio.open(path) as ds:
            arr, self.transform = ds.read(1), ds.transform
        t = self.transform
        m = [t.a, t.b, t.d, t.e, t.xoff, t.yoff]
        self.mask = arr == 1
        self.outline = unary_union([affine_transform(shape(g), m)
                                    for g, v in shapes(arr, mask=self.mask, connectivity=4)])

    def burn(self, polys: List) -> np.ndarray:
        """The polygons burnt onto the label grid (pixel centres inside)."""
        return rasterize([(p, 1) for p in polys], out_shape=self.mask.shape,
                         transform=self.transform, dtype="uint8").astype(bool) \
            if polys else np.zeros(self.mask.shape, bool)

    def pixel_iou(self, polys: List) -> float:
        """IoU of the polygons burnt back onto the label grid with the label pixels: what a
        segmentation score sees, blind to the staircase."""
        burnt = self.burn(polys)
        return float((burnt & self.mask).sum() / max((burnt | self.mask).sum(), 1))

    def staircase_loss(self, polys: List) -> float:
        """Polygon IoU loss of the polygons against their *own* pixel staircase (burnt onto
        the grid and outlined): what they would lose against raw even if the label's pixels
        were exactly theirs.  Polygon IoU loss ≈ this + the pixel IoU loss."""
        if not polys:
            return 0.0
        burnt = self.burn(polys).astype(np.uint8)
        t = self.transform
        m = [t.a, t.b, t.d, t.e, t.xoff, t.yoff]
        own = unary_union([affine_transform(shape(g), m)
                           for g, v in shapes(burnt, mask=burnt > 0, connectivity=4)])
        out = unary_union(polys)
        return 1 - out.intersection(own).area / max(out.union(own).area, 1e-12)

    def rectangle_floor(self) -> float:
        """The staircase loss of perfect straight-walled buildings of this set's sizes and
        orientations: each building replaced by its minimum rotated rectangle (clipped to the
        raster), scored against that rectangle set's own pixel staircase."""
        h, w = self.mask.shape
        frame = box(*_bounds(self.transform, w, h))
        parts = getattr(self.outline, "geoms", [self.outline])
        rects = [r for r in (p.minimum_rotated_rectangle.intersection(frame) for p in parts)
                 if not r.is_empty and r.area > 0]
        return self.staircase_loss(rects)

    def fitted_curve(self) -> Dict[str, Dict[str, float]]:
        """Polygon IoU loss and vertex cut of every building drawn with its own least-squares
        walls (:func:`engine.analysis.fitted.fitted_polygon`, holes kept) at fine tolerances
        (pixels): how close straight walls get to the staircase for a given vertex count."""
        from engine.analysis.fitted import fitted_polygon
        arr = self.mask.astype(np.uint8)
        frame = (arr.shape[1], arr.shape[0])
        t = self.transform
        m = [t.a, t.b, t.d, t.e, t.xoff, t.yoff]
        pixels = [shape(g) for g, v in shapes(arr, mask=arr > 0, connectivity=4)]
        curve = {}
        for tol in (0.5, 0.75, 1.0, 2.0):
            drawn = [affine_transform(fitted_polygon(p, tol, 0.0, frame), m) for p in pixels]
            out = unary_union(drawn)
            curve[str(tol)] = {
                "iou_loss": 1 - out.intersection(self.outline).area / out.union(self.outline).area,
                "vertex_cut": sum(map(_vertices, pixels)) / max(sum(map(_vertices, drawn)), 1)}
        return curve


def _vertices(p) -> int:
    return len(p.exterior.coords) - 1 + sum(len(r.coords) - 1 for r in p.interiors)


def _bounds(t, w: int, h: int) -> Tuple[float, float, float, float]:
    xs, ys = (t.xoff, t.xoff + w * t.a), (t.yoff, t.yoff + h * t.e)
    return min(xs), min(ys), max(xs), max(ys)


def right_angle_share(polys: List, frame) -> float:
    """Share of corners within 10° of a right angle (corners on the raster frame, where the
    tile cuts a building, do not count)."""
    angles = []
    for p in polys:
        for ring in [p.exterior, *p.interiors]:
            pts = np.asarray(ring.coords)[:-1]
            a, b = np.roll(pts, 1, axis=0) - pts, np.roll(pts, -1, axis=0) - pts
            cos = (a * b).sum(1) / np.maximum(np.hypot(*a.T) * np.hypot(*b.T), 1e-12)
            near = [np.isclose(pts[:, axis], edge, rtol=0, atol=1e-6)
                    for axis, edge in ((0, frame[0]), (1, frame[1]), (0, frame[2]), (1, frame[3]))]
            inside = ~np.logical_or.reduce(near)
            angles.append(np.degrees(np.arccos(np.clip(cos[inside], -1, 1))))
    angles = np.concatenate(angles) if angles else np.zeros(0)
    return float((np.abs(angles - 90) <= 10).mean()) if len(angles) else float("nan")


def boundary_f(out, ref, d: float) -> float:
    if out.is_empty or ref.is_empty:  # a model that found no building
        return 0.0
    a, b = out.boundary, ref.boundary
    precision = a.intersection(b.buffer(d)).length / max(a.length, 1e-12)
    recall = b.intersection(a.buffer(d)).length / max(b.length, 1e-12)
    return 2 * precision * recall / max(precision + recall, 1e-12)


def overlap_area(polys: List) -> float:
    """Area covered by more than one of ``polys`` (each pair counted once).  Pairs are found by
    their bounding boxes: shapely 1.8's STRtree warns that its query changes in 2.0."""
    bounds = np.array([p.bounds for p in polys], np.float64).reshape(-1, 4)
    total = 0.0
    for i, p in enumerate(polys):
        rest = bounds[i + 1:]
        meets = ((rest[:, 0] <= bounds[i, 2]) & (rest[:, 2] >= bounds[i, 0])
                 & (rest[:, 1] <= bounds[i, 3]) & (rest[:, 3] >= bounds[i, 1]))
        total += sum(p.intersection(polys[i + 1 + j]).area for j in np.nonzero(meets)[0])
    return total


def score(polys: List, reference: Reference, tol: float, frame,
          seconds: float) -> Dict[str, float]:
    invalid = sum(not p.is_valid for p in polys)
    polys = [p if p.is_valid else p.buffer(0) for p in polys]
    out, ref = unary_union(polys), reference.outline
    return {"iou": out.intersection(ref).area / max(out.union(ref).area, 1e-12),
            "pixel_iou": reference.pixel_iou(polys),
            "staircase_loss": reference.staircase_loss(polys),
            "polygons": len(polys), "invalid": invalid,
            "vertices": sum(map(_vertices, polys)),
            "right_angles": right_angle_share(polys, frame),
            "boundary_f": boundary_f(out, ref, tol),
            "overlap_m2": overlap_area(polys), "seconds": seconds}


def run_set(name: str, raster: Path, ref: Reference, tol: float) -> Dict[str, Dict[str, float]]:
    variants = {"raw": {"as_is": "all"}, "simplified": {"as_is": "all", "simplify": tol},
                "regularised": {"as_is": "all", "regularize": BUILDING, "tolerance": tol}}
    with rasterio.open(raster) as ds:
        frame = tuple(ds.bounds)
    scores = {}
    for variant, options in variants.items():
        out = WORK / f"{name}-{variant}.gpkg"
        started = time.perf_counter()
        vectorize(raster, out, values=[1], **options)
        scores[variant] = score(buildings(out), ref, tol, frame, time.perf_counter() - started)
        print(name, tol, variant, json.dumps({k: round(v, 4) for k, v in scores[variant].items()}),
              flush=True)
    return scores


# the child's own peak: VmHWM is its address space's; ru_maxrss would keep the peak of the
# (large, after the real sets) bench process it was forked from
PEAK = ("import re, runpy, sys\n"
        "sys.argv = ['engine', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('engine', run_name='__main__')\n"
        "finally:\n    status = open('/proc/self/status').read()\n"
        "    print('PEAK_KB', re.search(r'VmHWM:\\s*(\\d+)', status).group(1))\n")


SHAPED = ["--regularize", "building", "--smooth", "tree,low vegetation"]


def streaming(sizes: List[int]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Peak memory, time and CPU time of vectorize on synthetic scenes of growing size, with
    buildings regularised and vegetation smoothed ("shaped") and as plain pixel outlines
    ("as_is"); each run in its own process, which reports its peak."""
    from engine.sample import make_sample
    out: Dict[str, Dict[str, Dict[str, float]]] = {}
    for size in sizes:
        scene = make_sample(WORK / f"scene{size}", size=size)
        out[str(size)] = {}
        for variant, options in (("shaped", SHAPED), ("as_is", ["--as-is", "all"])):
            gpkg = WORK / f"scene{size}-{variant}.gpkg"
            started, cpu = time.perf_counter(), _children_cpu()
            r = subprocess.run([sys.executable, "-c", PEAK, "vectorize", "--input",
                                str(scene["labels"]), "--output", str(gpkg), *options],
                               cwd=ROOT, check=True, capture_output=True, text=True)
            peak_kb = int(r.stdout.rsplit("PEAK_KB", 1)[1].split()[0])
            written = ogr.Open(str(gpkg))  # keep: the layer dies with it
            out[str(size)][variant] = {
                "seconds": time.perf_counter() - started, "cpu_seconds": _children_cpu() - cpu,
                "peak_rss_mb": peak_kb / 1024, "features": written.GetLayer(0).GetFeatureCount()}
            print("streaming", size, variant, json.dumps(out[str(size)][variant]), flush=True)
    return out


def _children_cpu() -> float:
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", type=int, nargs="*", default=[1024, 3072],
                        help="synthetic scene sizes for the peak-memory runs (none: skip)")
    parser.add_argument("--only", choices=("sets", "predicted", "memory"),
                        help="run only the label sets, the predicted ones or the memory runs")
    parser.add_argument("--epochs", type=int, default=30,
                        help="training epochs of the U-Net for the predicted sets")
    parser.add_argument("--predicted", nargs="+", choices=[row[0] for row in PREDICTED],
                        help="run only these predicted sets (their results replace theirs in "
                             "polygons-predicted.json, the others' stay)")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = {"machine": machine(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if args.only in (None, "sets"):
        result = {"benchmark": "polygons", **stamp, "staircase_floor": staircase_floor(),
                  "sets": real_sets()}
        (RESULTS / "polygons.json").write_text(json.dumps(result, indent=1))
    if args.only in (None, "predicted"):
        path = RESULTS / "polygons-predicted.json"
        sets = json.loads(path.read_text())["sets"] if args.predicted and path.exists() else {}
        sets.update(predicted_sets(args.epochs, args.predicted))
        result = {"benchmark": "polygons-predicted", **stamp, "epochs": args.epochs, "sets": sets}
        path.write_text(json.dumps(result, indent=1))
    if args.only in (None, "memory"):
        result = {"benchmark": "polygons-memory", **stamp, "streaming": streaming(args.memory)}
        (RESULTS / "polygons-memory.json").write_text(json.dumps(result, indent=1))


def staircase_floor() -> List[Dict[str, float]]:
    """Polygon IoU of exact rotated rectangles against their own pixel outlines: what even a
    perfect outline loses against raw (pixel IoU: 1 by construction)."""
    from shapely import affinity
    from shapely.geometry import box
    rows = []
    for w, h in ((20, 20), (40, 50), (100, 100)):
        for angle in (0, 10, 37):
            truth = affinity.translate(affinity.rotate(box(0, 0, w, h), angle, origin=(0, 0)),
                                       100, 20)
            arr = rasterize([(truth, 1)], out_shape=(300, 300), dtype="uint8")
            (raw,) = [shape(g) for g, v in shapes(arr, mask=arr > 0, connectivity=4)]
            rows.append({"width_px": w, "height_px": h, "angle": angle,
                         "iou_loss": 1 - truth.intersection(raw).area / truth.union(raw).area})
    return rows


def real_sets() -> Dict[str, Dict]:
    """The real building labels, clean and prediction-like, at each tolerance."""
    results = {}
    for name, rel, value, pixel in SETS:
        path = DATA / rel
        if not path.exists():
            print(f"skip {name}: {path} is absent")
            continue
        with rasterio.open(path) as ds:
            labels = ds.read(1)
            georef = (ds.transform, ds.crs) if ds.crs else (None, "EPSG:2056")
        clean = class_raster(name, labels, value, pixel, *georef)
        ref = Reference(clean)
        mask = noisy(labels == value, pixel)
        rough = class_raster(f"{name}-noisy", mask, 1, pixel, *georef)
        results[name] = {"pixel_m": pixel, "rectangle_floor": ref.rectangle_floor(),
                         "fitted_curve": ref.fitted_curve(), "clean": {}, "noisy": {}}
        for tol in (t for t in TOLERANCES_M if t >= pixel):
            results[name]["clean"][str(tol)] = run_set(name, clean, ref, tol)
            results[name]["noisy"][str(tol)] = run_set(f"{name}-noisy", rough, ref, tol)
    return results


# The user's case: a U-Net trained on one part of a labelled scene predicts the held-out part,
# and its building polygons are scored against that part's label.  (name, image, label,
# building value, value the label leaves unlabelled, pixel size m, train and test windows as
# column, row, width, height, further train options).  The Swiss LiDAR scene is two thirds lake
# (no labels, no buildings): its land strip (x < 480) is split in two; buildings are 4 % of its
# training part, so it samples windows class-balanced (--balanced), as a user would.
PREDICTED = [
    ("potsdam", "isprs-loveda/potsdam/img_dir/2_10_0_0_512_512.png",
     "isprs-loveda/potsdam/ann_dir/2_10_0_0_512_512.png", 2, 0, 0.05,
     (0, 0, 256, 512), (256, 0, 256, 512), {}),
    ("vaihingen", "isprs-loveda/vaihingen/img_dir/area1_0_0_512_512.png",
     "isprs-loveda/vaihingen/ann_dir/area1_0_0_512_512.png", 2, 0, 0.09,
     (0, 0, 256, 512), (256, 0, 256, 512), {}),
    ("loveda-0", "isprs-loveda/loveda/img_dir/0.png", "isprs-loveda/loveda/ann_dir/0.png", 2, 0,
     0.3, (0, 0, 1024, 512), (0, 512, 1024, 512), {}),  # all its buildings are on the left
    ("swiss-lidar", "swiss-ortho/lidar/ref-img.tif",
     "swiss-ortho/lidar/derived_lidar_class_0.5m.tif", 6, 0, 0.5,
     (0, 0, 240, 400), (240, 0, 240, 400), {"balanced": True})]


def crop(src: Path, window: Tuple[int, int, int, int], out: Path, pixel: float) -> Path:
    """A window of an image as a GeoTIFF (rasters without georeferencing get the same made-up
    grid as their labels, so image and label crops line up)."""
    win = Window(*window)
    with rasterio.open(src) as ds:
        arr = ds.read(window=win)
        base = ds.transform if ds.crs else from_origin(2600000.0, 1200000.0, pixel, pixel)
        crs = ds.crs or "EPSG:2056"
    with rasterio.open(out, "w", driver="GTiff", width=win.width, height=win.height,
                       count=arr.shape[0], dtype=arr.dtype, crs=crs,
                       transform=window_transform(win, base)) as dst:
        dst.write(arr)
    return out


def predicted_sets(epochs: int, only: Optional[List[str]] = None) -> Dict[str, Dict]:
    """Polygons of a real model's prediction on held-out pixels, against their label (the
    sets named in ``only``, default all)."""
    from engine.formats.modelfile import read_card
    from engine.inference.pipeline import image_band_statistics, predict
    from engine.training import train
    results = {}
    for name, image, label, value, ignore, pixel, train_win, test_win, options in PREDICTED:
        if only and name not in only:
            continue
        if not (DATA / image).exists() or not (DATA / label).exists():
            print(f"skip {name}-pred: {DATA / image} or its label is absent")
            continue
        parts = {}
        for part, window in (("train", train_win), ("test", test_win)):
            img = crop(DATA / image, window, WORK / f"{name}-{part}-img.tif", pixel)
            lab = crop(DATA / label, window, WORK / f"{name}-{part}-lab-src.tif", pixel)
            with rasterio.open(lab) as ds:
                parts[part] = (img, class_raster(f"{name}-{part}-lab", ds.read(1), value, pixel,
                                                 ds.transform, ds.crs, ignore))
        model = WORK / f"{name}-unet.rsmodel"
        started = time.process_time()
        train(arch="unet", images=[str(parts["train"][0])], labels=[str(parts["train"][1])],
              out=str(model), tile=128, epochs=epochs, batch_size=8, samples_per_epoch=96,
              val_fraction=0.15, patience=epochs, device="cpu", workers=0,
              hparams={"base": 16, "depth": 4}, statistics_from=[str(DATA / image)], **options)
        train_cpu = time.process_time() - started
        prediction = WORK / f"{name}-pred.tif"
        # both parts normalised as in the whole image (the Swiss test part is half lake)
        predict(model, parts["test"][0], prediction, device="cpu", tile=128, overlap=16,
                statistics=image_band_statistics(read_card(model), DATA / image))
        ref = Reference(parts["test"][1])
        results[name] = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "epochs": epochs,
                         "pixel_m": pixel, "train_cpu_s": round(train_cpu, 1),
                         "train_window": train_win, "test_window": test_win,
                         "train_options": options,
                         "reference_building_px": int(ref.mask.sum()),
                         "rectangle_floor": ref.rectangle_floor(), "tolerances": {}}
        for tol in (t for t in TOLERANCES_M if t >= pixel):
            results[name]["tolerances"][str(tol)] = run_set(f"{name}-pred", prediction, ref, tol)
    return results


if __name__ == "__main__":
    main()
