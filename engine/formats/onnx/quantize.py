"""int8 on the CPU: ``engine export --model M.rsmodel --quantize int8 [--calibration RASTER]``.

ONNX Runtime's static quantisation (QDQ, per-channel 7-bit weights, uint8 activations, min-max
calibration) of the model's fp32 runtime graph (:mod:`.runtime_graph`), calibrated on windows
of the raster the user names, or of the training rasters recorded in the card.  The class
agreement of the int8 graph with the fp32 one on those windows (valid pixels) is measured; below
99 % the int8 graph is refused.  Otherwise it joins the cache and the card records the agreement
(``card["quantization"]["int8"]``), so ``predict --precision int8`` can run it.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np

from ...compute.onnx_runtime import onnxruntime, open_session
from ...io.radiometry import effective_affine, image_statistics, needs_statistics
from ...io.rasters import WindowReader, normalise, open_raster, resolve_bands
from ...jobs import CancelledFn, InputError, Job, ModelFileError, ProgressFn
from ..modelfile import load_model, save_model
from .runtime_graph import OUTPUT_NAME, cached_path, export_runtime_graph, store

MIN_AGREEMENT = 0.99
WINDOWS = 16


def calibration_rasters(card: Dict[str, Any], calibration: Optional[str | Path]) -> List[Path]:
    """The raster named by the user, else the card's training rasters that exist here."""
    if calibration is not None:
        path = Path(calibration)
        if not path.is_file():
            raise InputError(f"calibration raster {path} does not exist; check the path")
        return [path]
    data = (card.get("training") or {}).get("data") or []
    found = [Path(d["image"]) for d in data if d.get("image") and Path(d["image"]).is_file()]
    if not found:
        raise InputError("the model card records no training raster that exists here; name a "
                         "raster like the ones the model will segment with --calibration RASTER")
    return found


def calibration_windows(card: Dict[str, Any], rasters: Sequence[Path], count: int = WINDOWS
                        ) -> List[Dict[str, np.ndarray]]:
    """Up to ``count`` normalised tile windows spread evenly over ``rasters`` (1×C×T×T each),
    with their valid masks under the key ``valid``."""
    group = card["inputs"]["image"]
    tile = int(card["tile_size"])
    per_raster = max(1, -(-count // len(rasters)))
    out: List[Dict[str, np.ndarray]] = []
    for path in rasters:
        with open_raster(path) as ds:
            reader = WindowReader(ds, resolve_bands(ds, group["bands"]))
            stats = image_statistics(reader) if needs_statistics(group) else None
            mean, std = effective_affine(group, stats)
            for x, y in _spread(ds.width, ds.height, tile, per_raster):
                win = reader.read(x, y, tile)
                if not win.valid.any():
                    continue
                out.append({"image": normalise(win.pixels, win.valid, mean, std)[None],
                            "valid": win.valid[None]})
    if not out:
        raise InputError("the calibration raster has no valid pixels; name another with "
                         "--calibration")
    return out[:count]


def _spread(width: int, height: int, tile: int, count: int) -> Iterator[tuple]:
    """``count`` window origins on an even grid over the raster (fewer on a small one)."""
    side = max(1, int(np.ceil(np.sqrt(count))))
    xs = np.unique(np.linspace(0, max(width - tile, 0), side).astype(int))
    ys = np.unique(np.linspace(0, max(height - tile, 0), side).astype(int))
    return iter([(int(x), int(y)) for y in ys for x in xs][:count])


def quantize_int8(fp32: bytes, windows: Sequence[Dict[str, np.ndarray]]) -> bytes:
    """The int8 (QDQ) graph of the fp32 runtime graph ``fp32``, calibrated on ``windows``."""
    onnxruntime()
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quant_pre_process, quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter([{"image": w["image"]} for w in windows])

        def get_next(self) -> Optional[Dict[str, np.ndarray]]:
            return next(self._items, None)

    with tempfile.TemporaryDirectory(prefix="rs-seg-int8-") as tmp:
        raw, source, target = (Path(tmp) / f"{n}.onnx" for n in ("raw", "fp32", "int8"))
        raw.write_bytes(fp32)
        try:
            with quiet_quantizer():
                quant_pre_process(str(raw), str(source), skip_symbolic_shape=True)
                quantize_static(str(source), str(target), Reader(),
                                quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                # 7-bit weights: on CPUs without VNNI (AVX2 alone) the
                                # uint8 × int8 kernels add products in 16 bits and full-range
                                # weights overflow them (a test model agreed with fp32 on
                                # 94 % of pixels on an AMD EPYC); 7 bits cannot overflow
                                reduce_range=True,
                                calibrate_method=CalibrationMethod.MinMax)
        except Exception as exc:  # onnxruntime's quantiser raises plain Exceptions
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelFileError(f"onnxruntime could not quantise the graph ({first[:200]})") \
                from None
        return target.read_bytes()


@contextlib.contextmanager
def quiet_quantizer() -> Iterator[None]:
    """onnxruntime's quantiser logs advice on the root logger at WARNING: kept out of RS Seg's
    log."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def agreement(fp32: bytes, int8: bytes, windows: Sequence[Dict[str, np.ndarray]]) -> float:
    """Share of valid pixels of ``windows`` given the same class by both graphs."""
    sessions = [open_session(Path(name), data, _cpu())[0]
                for name, data in (("fp32", fp32), ("int8", int8))]
    same = total = 0
    for w in windows:
        a, b = (s.run([OUTPUT_NAME], {"image": w["image"]})[0] for s in sessions)
        valid = w["valid"]
        same += int(((a.argmax(1) == b.argmax(1)) & valid).sum())
        total += int(valid.sum())
    return same / max(total, 1)


def _cpu() -> Any:
    from ...compute.devices import Device
    return Device("cpu")


def export_int8(model: str | Path, calibration: Optional[str | Path] = None,
                windows: int = WINDOWS, min_agreement: float = MIN_AGREEMENT,
                progress: Optional[ProgressFn] = None,
                cancelled: Optional[CancelledFn] = None) -> Dict[str, Any]:
    """Quantise ``model`` (an ``.rsmodel``) to int8 for ``predict --precision int8``.

    Returns the record written into the card (agreement, calibration rasters, windows, date)
    plus the cached graph's path.  Raises :class:`ModelFileError` when the agreement with fp32
    is below ``min_agreement``.
    """
    job = Job(progress, cancelled)
    lm = load_model(model, "cpu")
    card = lm.card
    if card["task"] != "segmentation" or list(card["inputs"]) != ["image"]:
        raise ModelFileError(f"{Path(model).name} is a {card['task']} model with inputs "
                             f"{', '.join(card['inputs'])}; int8 calibration reads one raster, "
                             f"so only single-input segmentation models are quantised")
    rasters = calibration_rasters(card, calibration)
    job.report(0.05, "int8: reading calibration windows")
    wins = calibration_windows(card, rasters, windows)
    job.check()
    job.report(0.2, "int8: exporting the fp32 graph")
    fp32 = export_runtime_graph(lm)
    job.check()
    job.report(0.4, "int8: calibrating and quantising")
    int8 = quantize_int8(fp32, wins)
    job.check()
    job.report(0.8, "int8: measuring the class agreement with fp32")
    share = agreement(fp32, int8, wins)
    if share < min_agreement:
        raise ModelFileError(f"int8 refused: it gives the fp32 class on only {100 * share:.2f} % "
                             f"of the calibration pixels (below {100 * min_agreement:.0f} %); "
                             f"keep fp32, or calibrate on a raster closer to the imagery the "
                             f"model segments")
    record = {"agreement": round(share, 5), "calibration": [str(r.resolve()) for r in rasters],
              "windows": len(wins), "method": "onnxruntime static QDQ, per-channel 7-bit weights, min-max",
              "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    card = dict(card)
    card["quantization"] = {**(card.get("quantization") or {}), "int8": record}
    store(cached_path(lm, "fp32"), fp32)
    graph = store(cached_path(lm, "int8"), int8)
    save_model(model, card, lm.network)
    job.report(1.0, "int8: done")
    return {**record, "graph": str(graph), "model": str(model)}
