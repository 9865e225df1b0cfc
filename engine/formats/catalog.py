"""Names and tasks of the built-in architectures, readable without importing torch.

The QGIS provider lists architectures at start-up; importing the registry would load torch into
every QGIS session.  A test keeps this table equal to the registry.
"""
ARCHITECTURES = {
    "unet": "segmentation",
    "mindist": "segmentation",
    "srcbtfusion": "segmentation",
    "cafe": "segmentation",
    "glcnet": "segmentation",
    "vsgnet": "segmentation",
    "fcsiamdiff": "change",
    "sgsln": "change",
}
# Architectures whose forward fuses an auxiliary raster (image + aux).
NEEDS_AUX = ("cafe", "vsgnet")
# Architectures with ``ssl_features`` (self-supervised pre-training with `pretrain`).
SELF_SUPERVISED = ("glcnet", "unet")


def architectures(task: str | None = None) -> list:
    """Architecture names (optionally for one task), sorted."""
    return sorted(n for n, t in ARCHITECTURES.items() if task is None or t == task)
