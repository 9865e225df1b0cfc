"""What each dock tab asks Processing to do: plain dataclasses in, parameter dicts out.

No widgets here: the tabs fill a state object, these functions check it and build the
parameters of the same ``rs_seg:*`` algorithms the toolbox runs.  Problems the user can fix
raise :class:`InputProblem` with the sentence to show.
"""
from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .messages import InputProblem

SEGMENT_ALG = "rs_seg:segment"
CHANGE_ALG = "rs_seg:detect_change"
TRAIN_ALGS = {"segmentation": "rs_seg:train_segmentation", "change": "rs_seg:train_change"}
OUTLINES_MODEL, OUTLINES_PIXEL = "model", "pixel"  # Segment tab: class polygons shaped or not


@dataclass
class Tiling:
    """Tile, overlap and batch; ``None`` means the model's own value (batch: the engine's 8)."""

    tile: Optional[int] = None
    overlap: Optional[int] = None
    batch: Optional[int] = None

    def parameters(self) -> Dict[str, int]:
        out = {}
        for key, value in (("TILE_SIZE", self.tile), ("OVERLAP", self.overlap),
                           ("BATCH_SIZE", self.batch)):
            if value is not None:
                out[key] = int(value)
        return out


@dataclass
class Outputs:
    """Where a run writes: ``folder`` ('' = QGIS's temporary folder) and a name stem."""

    folder: str = ""
    stem: str = "rs_seg"

    def path(self, suffix: str) -> str:
        folder = Path(self.folder) if self.folder else Path(_temp_folder())
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder / f"{self.stem}_{suffix}")


@dataclass
class SegmentState:
    """The Segment tab's choices.  Layers are layer ids of the project or file paths."""

    layer: str
    layer_name: str
    model: str
    aux_layer: str = ""
    device: str = "auto"
    tiling: Tiling = field(default_factory=Tiling)
    extent: str = ""  # 'xmin,xmax,ymin,ymax [EPSG:…]'; '' = the whole layer
    probabilities: bool = False
    polygons: bool = False
    outlines: str = OUTLINES_MODEL
    outputs: Outputs = field(default_factory=Outputs)
    bands: str = ""  # "1,2,3": the layer bands feeding the model, in its order ("": the model's)


@dataclass
class ChangeState:
    """The Compare dates tab's choices; ``model`` '' means change vector analysis (no model)."""

    before: str
    before_name: str
    after: str
    after_name: str
    model: str = ""
    segmentation_model: str = ""
    threshold: float = 0.5
    device: str = "auto"
    tiling: Tiling = field(default_factory=Tiling)
    probabilities: bool = False
    polygons: bool = True
    outputs: Outputs = field(default_factory=Outputs)


@dataclass
class TrainState:
    """The Train tab's choices.  ``images_after`` is used by change training only."""

    task: str
    images: List[str]
    architecture: str
    output_model: str
    images_after: List[str] = field(default_factory=list)
    label_polygons: str = ""
    class_field: str = ""
    label_rasters: List[str] = field(default_factory=list)
    epochs: int = 20
    batch: int = 8
    tile: int = 256
    learning_rate: Optional[float] = None  # None: the architecture's (×0.3 when fine-tuning)
    validation_fraction: float = 0.2
    ignore_value: Optional[int] = None
    init_model: str = ""
    new_head: bool = False  # fine-tune with other classes than the initial model's
    normalisation: str = ""  # "": the engine's default (image)
    time_budget_s: Optional[float] = None
    backbone_weights: str = ""
    device: str = "auto"


def processing_device(device: str) -> str:
    """The DEVICE value for Processing (auto | cpu | cuda): 'cuda:N' is passed as 'cuda'."""
    text = (device or "auto").strip().lower()
    return "cuda" if text.startswith("cuda") else text if text in ("auto", "cpu") else "auto"


def safe_name(text: str, limit: int = 40) -> str:
    """A file-name friendly version of a layer or model name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.")[:limit] or "layer"


def run_stamp(when: Optional[_dt.datetime] = None) -> str:
    """Seconds-resolution stamp that keeps outputs of successive runs apart."""
    return (when or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")


def run_name(kind: str, subject: str, model: str, when: Optional[_dt.datetime] = None) -> str:
    """Layer-tree group name of a run, e.g. 'Segment t1 — unet 14:02'."""
    stem = Path(model).stem if model else "CVA"
    return f"{kind} {subject} — {stem} {(when or _dt.datetime.now()):%H:%M}"


def extent_text(xmin: float, ymin: float, xmax: float, ymax: float, authid: str) -> str:
    """An EXTENT parameter value: 'xmin,xmax,ymin,ymax [EPSG:…]'."""
    return f"{xmin!r},{xmax!r},{ymin!r},{ymax!r} [{authid}]"


def segment_parameters(state: SegmentState) -> Dict[str, Any]:
    """``rs_seg:segment`` parameters for the Segment tab's state."""
    if not state.layer:
        raise InputProblem("Choose a raster layer to segment (Segment ▸ Raster layer).")
    if not state.model:
        raise InputProblem("Choose a segmentation model (Segment ▸ Model), or import one in "
                           "the Models tab.")
    if state.aux_layer and state.aux_layer == state.layer:
        raise InputProblem("The auxiliary layer is the image itself; choose another layer "
                           "(e.g. a DSM) or none.")
    params: Dict[str, Any] = {"INPUT": state.layer, "MODEL": state.model,
                              "DEVICE": processing_device(state.device),
                              "OUTPUT": state.outputs.path("classes.tif"),
                              **state.tiling.parameters()}
    if state.aux_layer:
        params["AUX_INPUT"] = state.aux_layer
    if state.bands.strip():
        params["BANDS"] = state.bands.strip()
    if state.extent:
        params["EXTENT"] = state.extent
    if state.probabilities:
        params["OUTPUT_PROBABILITY"] = state.outputs.path("probabilities.tif")
    if state.polygons:
        params["OUTPUT_VECTOR"] = state.outputs.path("classes.gpkg")
        if state.outlines == OUTLINES_PIXEL:
            params["AS_IS"] = "all"
    return params


def change_parameters(state: ChangeState) -> Dict[str, Any]:
    """``rs_seg:detect_change`` parameters for the Compare dates tab's state."""
    if not state.before or not state.after:
        raise InputProblem("Choose both the 'before' and the 'after' layers (Compare dates).")
    if state.before == state.after:
        raise InputProblem("'Before' and 'after' are the same layer; choose the two dates.")
    if not 0.0 <= state.threshold <= 1.0:
        raise InputProblem(f"The change threshold must be between 0 and 1 (got "
                           f"{state.threshold}).")
    params: Dict[str, Any] = {"INPUT_T1": state.before, "INPUT_T2": state.after,
                              "METHOD": "model" if state.model else "cva",
                              "THRESHOLD": float(state.threshold),
                              "DEVICE": processing_device(state.device),
                              "OUTPUT": state.outputs.path("change.tif"),
                              **state.tiling.parameters()}
    if state.model:
        params["MODEL"] = state.model
    if state.segmentation_model:
        params["SEGMENTATION_MODEL"] = state.segmentation_model
        params["OUTPUT_FROM_TO"] = state.outputs.path("from_to.tif")
        params["OUTPUT_FROM_TO_TABLE"] = state.outputs.path("from_to.csv")
    if state.probabilities:
        params["OUTPUT_PROBABILITY"] = state.outputs.path("change_probability.tif")
    if state.polygons:
        params["OUTPUT_VECTOR"] = state.outputs.path("change.gpkg")
    return params


def train_parameters(state: TrainState) -> Tuple[str, Dict[str, Any]]:
    """The training algorithm id and its parameters for the Train tab's state."""
    if state.task not in TRAIN_ALGS:
        raise InputProblem(f"Unknown training task {state.task!r}.")
    if not state.images:
        raise InputProblem("Choose at least one training image (Train ▸ Images).")
    if state.task == "change" and len(state.images_after) != len(state.images):
        raise InputProblem(f"Give one 'after' image per 'before' image ({len(state.images)} "
                           f"before, {len(state.images_after)} after).")
    if not state.architecture:
        raise InputProblem("Choose an architecture (none is available without torch; see "
                           "Check environment).")
    if state.label_polygons and state.label_rasters:
        raise InputProblem("Give the labels either as polygons or as rasters, not both.")
    if state.label_polygons and not state.class_field:
        raise InputProblem("Choose the class field of the label polygons.")
    if not state.label_polygons and not state.label_rasters:
        raise InputProblem("Choose the labels: a polygon layer with a class field, or a label "
                           "raster per image.")
    if state.label_rasters and len(state.label_rasters) != len(state.images):
        raise InputProblem(f"Give one label raster per image ({len(state.images)} images, "
                           f"{len(state.label_rasters)} label rasters).")
    if not state.output_model:
        raise InputProblem("Choose where to save the trained model.")
    output = state.output_model if state.output_model.endswith(".rsmodel") \
        else state.output_model + ".rsmodel"
    params: Dict[str, Any] = {"ARCHITECTURE": state.architecture, "EPOCHS": int(state.epochs),
                              "BATCH_SIZE": int(state.batch), "TILE_SIZE": int(state.tile),
                              "VALIDATION_FRACTION": float(state.validation_fraction),
                              "DEVICE": processing_device(state.device),
                              "OUTPUT_MODEL": output}
    if state.task == "change":
        params.update(INPUT_T1=list(state.images), INPUT_T2=list(state.images_after))
    else:
        params["INPUT"] = list(state.images)
    if state.label_polygons:
        params.update(LABEL_POLYGONS=state.label_polygons, CLASS_FIELD=state.class_field)
    else:
        params["LABELS"] = list(state.label_rasters)
    if state.ignore_value is not None:
        params["IGNORE_VALUE"] = int(state.ignore_value)
    if state.learning_rate:
        params["LEARNING_RATE"] = float(state.learning_rate)
    if state.init_model:
        params.update(INIT_MODEL=state.init_model, INIT_HEAD="new" if state.new_head else "keep")
    if state.normalisation:
        params["NORMALISATION"] = state.normalisation
    if state.time_budget_s:
        params["TIME_BUDGET"] = float(state.time_budget_s)
    if state.backbone_weights:
        params["BACKBONE_WEIGHTS"] = state.backbone_weights
    return TRAIN_ALGS[state.task], params


def default_model_path(folder: str | Path, architecture: str,
                       when: Optional[_dt.datetime] = None) -> str:
    """'<models folder>/<arch>-<date>-<time>.rsmodel', numbered if that file exists."""
    base = Path(folder) / f"{safe_name(architecture)}-{(when or _dt.datetime.now()):%Y%m%d-%H%M}"
    candidate, n = base.with_suffix(".rsmodel"), 2
    while candidate.exists():
        candidate, n = base.with_name(f"{base.name}-{n}").with_suffix(".rsmodel"), n + 1
    return str(candidate)


def _temp_folder() -> str:
    from qgis.core import QgsProcessingUtils
    return QgsProcessingUtils.tempFolder()
