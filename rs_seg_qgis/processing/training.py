"""Shared parameters and run of the two training algorithms (segmentation, change)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from qgis.core import (QgsProcessing, QgsProcessingContext, QgsProcessingException,
                       QgsProcessingFeedback, QgsProcessingOutputFile, QgsProcessingOutputNumber,
                       QgsProcessingParameterBoolean, QgsProcessingParameterFile,
                       QgsProcessingParameterFileDestination,
                       QgsProcessingParameterMultipleLayers, QgsProcessingParameterNumber,
                       QgsProcessingParameterString)

from .base import (MODEL_FILTER, EngineRun, RsSegAlgorithm, architectures, help_html,
                   require_engine)
from .segment import parse_bands

#: Published checkpoint containers (recognised by content, so any name works).
WEIGHTS_FILTER = "Weights (*.pth *.pt *.bin *.safetensors *.npz);;All files (*)"

COMMON_HELP: List[Tuple[str, str]] = [
    ("LABELS", "label rasters of class values, one per image in the same order (or use "
               "LABEL_POLYGONS)"),
    ("LABEL_COLOURS", "colour-coded LABELS (RGB, a colour per class, e.g. ISPRS): isprs, or a "
                      "table file of 'R,G,B,name' lines; the table goes into the model card"),
    ("BANDS", "bands of every image to train on, e.g. 1,2,3,4 (empty: its data bands; a band "
              "flagged alpha, often the NIR of RGBIR tiles, is a mask unless chosen here)"),
    ("LABEL_POLYGONS", "digitised polygons with a class field, instead of LABELS"),
    ("CLASS_FIELD", "the field of LABEL_POLYGONS holding the class (integer value or name)"),
    ("IGNORE_VALUE", "label value that is not learnt (e.g. 0 for 'unlabelled')"),
    ("ARCHITECTURE", "the network (see the model zoo in the documentation); with INIT_MODEL "
                     "the initial model's, whatever is chosen here"),
    ("EPOCHS", "passes over the training windows (typical 20–100; stops early when the "
               "validation score stalls)"),
    ("BATCH_SIZE", "windows per step (8 on a GPU; lower it on out-of-memory errors)"),
    ("TILE_SIZE", "training window edge in pixels (typical 256)"),
    ("LEARNING_RATE", "AdamW learning rate (typical 1e-3; lower it if the loss explodes)"),
    ("VALIDATION_FRACTION", "share of spatial blocks held out for validation (typical 0.2)"),
    ("INIT_MODEL", "optional model to start from (fine-tuning, the documented path to a new "
                   "sensor: a handful of labelled samples of your imagery); its architecture and "
                   "hyper-parameters, normalisation and GSD are kept, its layers copied, the "
                   "learning rate is 0.3×"),
    ("INIT_HEAD", "keep: same classes as INIT_MODEL; new: train the classifier anew (other "
                  "classes)"),
    ("NORMALISATION", "image (default): each image standardised with its own band statistics, "
                      "so other brightness or sensors map alike; percentile: 2–98 % stretch; "
                      "dataset: the training data's statistics only"),
    ("SENSOR_AUGMENT", "blur, noise, per-band gain and gamma (each date on its own) so the "
                       "model holds up on other sensors; another GSD is met at prediction time "
                       "(GSD auto), so windows are not zoomed (engine: --scale-augment-p)"),
    ("TRAIN_GSD", "train at this ground sampling distance (windows are resampled)"),
    ("INPUT_GSD", "pixel size of training images without georeferencing (PNG pairs), needed "
                  "to train at TRAIN_GSD or at the GSD of INIT_MODEL"),
    ("TIME_BUDGET", "fit the epochs into this many seconds (fewer, shorter epochs when the "
                    "first steps show they would not fit; checked after every step; best model "
                    "kept)"),
    ("BACKBONE_WEIGHTS", "optional published pre-trained encoder weights, as downloaded "
                         "(ResNet-50 torchvision/timm .pth/.safetensors for cafe/glcnet/"
                         "srcbtfusion, R50+ViT-B_16.npz for srcbtfusion, DINOv2 .pth for "
                         "vsgnet); the encoder then learns at 0.1× the learning rate"),
    ("DEVICE", "auto, cpu or cuda"),
    ("OUTPUT_MODEL", "the trained model (.rsmodel); the training history (JSON) and curves "
                     "(PNG) are written beside it"),
]


class TrainAlgorithm(RsSegAlgorithm):
    """Training: subclasses declare their image inputs and set TASK."""

    GROUP = "Training"
    GROUP_ID = "training"
    TASK = ""
    SUMMARY = ""
    INPUT_HELP: Sequence[Tuple[str, str]] = ()
    DEFAULT_ARCHITECTURE = ""

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return help_html(self.SUMMARY, [*self.INPUT_HELP, *COMMON_HELP],
                         "Cancelling keeps the best model saved so far and the checkpoint "
                         "<model>.last.ckpt, from which 'python -m engine train --resume' "
                         "continues.")

    def add_image_inputs(self) -> None:
        """Declare the image parameters of this task."""
        raise NotImplementedError

    def image_inputs(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                     feedback: QgsProcessingFeedback) -> Dict[str, List[str]]:
        """``TrainConfig`` image arguments (``images``, ``images2``, ``aux``) as files."""
        raise NotImplementedError

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:  # noqa: N802
        self.add_image_inputs()
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "LABELS", "Label rasters (one per image)", QgsProcessing.TypeRaster, optional=True))
        self.addParameter(QgsProcessingParameterString(
            "LABEL_COLOURS", "Colour-coded labels: isprs or a colour table file", optional=True))
        self.addParameter(QgsProcessingParameterString(
            "BANDS", "Bands to train on (e.g. 1,2,3,4; empty: the data bands)", optional=True))
        self.add_class_polygons("LABEL_POLYGONS", "Label polygons", "Label value to ignore")
        names = architectures(self.TASK)
        default = self.DEFAULT_ARCHITECTURE if self.DEFAULT_ARCHITECTURE in names else None
        self.add_enum("ARCHITECTURE", "Architecture", names, default)
        self.add_int("EPOCHS", "Epochs", default=20, minimum=1)
        self.add_int("BATCH_SIZE", "Batch size", default=8, minimum=1)
        self.add_int("TILE_SIZE", "Tile size in pixels", default=256, minimum=16)
        self.addParameter(QgsProcessingParameterNumber(
            "LEARNING_RATE", "Learning rate (empty: the architecture's; ×0.3 when fine-tuning)",
            QgsProcessingParameterNumber.Double, optional=True, minValue=1e-8))
        self.addParameter(QgsProcessingParameterNumber(
            "VALIDATION_FRACTION", "Validation fraction", QgsProcessingParameterNumber.Double,
            0.2, minValue=0.0, maxValue=0.9))
        self.add_model("INIT_MODEL", "Fine-tune from model", optional=True)
        self.add_enum("INIT_HEAD", "Classifier of the initial model", ["keep", "new"], "keep",
                      optional=True, labels={"keep": "Keep its classes",
                                             "new": "New classifier (other classes)"})
        self.add_enum("NORMALISATION", "Normalisation", ["image", "percentile", "dataset"],
                      optional=True, labels={"image": "Per image (mean and spread)",
                                             "percentile": "Per image, 2–98 % stretch",
                                             "dataset": "Training data statistics"})
        self.addParameter(QgsProcessingParameterBoolean(
            "SENSOR_AUGMENT", "Sensor-shift augmentation (blur, noise, gain, gamma)",
            defaultValue=True, optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            "TRAIN_GSD", "Train at GSD (m; empty: the images' own)",
            QgsProcessingParameterNumber.Double, optional=True, minValue=0.0))
        self.addParameter(QgsProcessingParameterNumber(
            "INPUT_GSD", "Pixel size of images without georeferencing (m)",
            QgsProcessingParameterNumber.Double, optional=True, minValue=0.0))
        self.addParameter(QgsProcessingParameterNumber(
            "TIME_BUDGET", "Time budget (seconds; empty: none)",
            QgsProcessingParameterNumber.Double, optional=True, minValue=0.0))
        self.addParameter(QgsProcessingParameterFile(
            "BACKBONE_WEIGHTS", "Pre-trained backbone weights", optional=True,
            behavior=QgsProcessingParameterFile.File, fileFilter=WEIGHTS_FILTER))
        self.add_device()
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUTPUT_MODEL", "Trained model", MODEL_FILTER))
        self.addOutput(QgsProcessingOutputFile("OUTPUT_HISTORY", "Training history (JSON)"))
        self.addOutput(QgsProcessingOutputFile("OUTPUT_CURVES", "Training curves (PNG)"))
        self.addOutput(QgsProcessingOutputNumber("BEST_METRIC", "Best validation score"))

    def processAlgorithm(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> Dict[str, Any]:  # noqa: N802
        require_engine()
        from engine.training import train
        from engine.training.checkpoints import saying_what_a_cancel_keeps

        out = self.parameterAsFileOutput(parameters, "OUTPUT_MODEL", context)
        labels = self.raster_inputs(parameters, "LABELS", context, feedback)
        polygons = self.vector_input(parameters, "LABEL_POLYGONS", context, feedback)
        if bool(labels) == bool(polygons):
            raise QgsProcessingException("give the labels either as LABELS rasters or as "
                                         "LABEL_POLYGONS with a CLASS_FIELD (not both)")
        fields = self.parameterAsFields(parameters, "CLASS_FIELD", context)
        run = EngineRun(context, feedback)
        init = self.parameterAsFile(parameters, "INIT_MODEL", context) or None
        result = run.call(
            saying_what_a_cancel_keeps(train, out, "python -m engine train"), out=out,
            task=self.TASK, labels=labels, polygons=polygons,
            label_colours=self.parameterAsString(parameters, "LABEL_COLOURS", context) or None,
            bands=parse_bands(self.parameterAsString(parameters, "BANDS", context)),
            class_field=fields[0] if fields else None,
            ignore_value=self.optional_int(parameters, "IGNORE_VALUE", context),
            arch=None if init else self.parameterAsEnumString(parameters, "ARCHITECTURE",
                                                              context),
            epochs=self.parameterAsInt(parameters, "EPOCHS", context),
            batch_size=self.parameterAsInt(parameters, "BATCH_SIZE", context),
            tile=self.parameterAsInt(parameters, "TILE_SIZE", context),
            lr=self.optional_float(parameters, "LEARNING_RATE", context),
            val_fraction=self.parameterAsDouble(parameters, "VALIDATION_FRACTION", context),
            init=init,
            init_head=self.parameterAsEnumString(parameters, "INIT_HEAD", context) or "keep",
            normalisation=self.parameterAsEnumString(parameters, "NORMALISATION", context) or None,
            sensor_augment=self.parameterAsBoolean(parameters, "SENSOR_AUGMENT", context)
            if parameters.get("SENSOR_AUGMENT") is not None else True,
            gsd=self.optional_float(parameters, "TRAIN_GSD", context),
            input_gsd=self.optional_float(parameters, "INPUT_GSD", context),
            time_budget_s=self.optional_float(parameters, "TIME_BUDGET", context),
            backbone_weights=self.parameterAsFile(parameters, "BACKBONE_WEIGHTS", context) or None,
            device=self.parameterAsEnumString(parameters, "DEVICE", context),
            task_name="training",
            **self.image_inputs(parameters, context, feedback))
        feedback.pushInfo(f"best validation score {result['best_metric']:.4f} after "
                          f"{result['epochs_run']} epoch(s), {result['seconds']:.0f} s")
        return {"OUTPUT_MODEL": out, "OUTPUT_HISTORY": result.get("history"),
                "OUTPUT_CURVES": result.get("curves"), "BEST_METRIC": result["best_metric"]}
