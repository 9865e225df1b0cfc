"""Which published layouts initialise which part of each zoo architecture (the mapping plans)."""
from __future__ import annotations

from typing import Callable, Dict

from torch import nn

from . import resnet, vit_npz
from ..io.weight_files import WeightFile
from .transfer import Plan


def _cafe_resnet(net: nn.Module, wf: WeightFile) -> Plan:
    pairs, unused = {}, []
    for prefix in ("rgb.", "dsm."):
        p, unused = resnet.prefixed(wf.tensors, prefix)
        pairs.update(p)
    # the DSM stream starts from the mean RGB filter repeated over its bands (CaFE's reading)
    return Plan("resnet", ["rgb.", "dsm."], pairs, unused,
                first_convs={"rgb.conv1.weight": "rgb", "dsm.conv1.weight": "mean"})


def _glcnet_resnet(net: nn.Module, wf: WeightFile) -> Plan:
    pairs, unused = resnet.prefixed(wf.tensors, "backbone.")
    return Plan("resnet", ["backbone."], pairs, unused,
                first_convs={"backbone.conv1.weight": "rgb"})


def _srcbt_resnet(net: nn.Module, wf: WeightFile) -> Plan:
    pairs, unused = resnet.to_bit_trunk(wf.tensors)
    return Plan("resnet", ["trunk."], pairs, unused, first_convs={"trunk.root_conv.weight": "rgb"})


def _srcbt_npz(net: nn.Module, wf: WeightFile) -> Plan:
    pairs, unused = vit_npz.srcbtfusion_pairs(wf.tensors)
    return Plan("vit_npz", ["trunk.", "transformer."], pairs, unused,
                first_convs={"trunk.root_conv.weight": "rgb"},
                resizers={vit_npz.POSITION: vit_npz.fit_position})


#: architecture → layout → plan builder.  VSGNet's frozen encoder is not a parameter of the
#: network: it is rebuilt from the file by path (see :func:`engine.weights.backbone_hparams`).
PLANS: Dict[str, Dict[str, Callable[[nn.Module, WeightFile], Plan]]] = {
    "cafe": {"resnet": _cafe_resnet},
    "glcnet": {"resnet": _glcnet_resnet},
    "srcbtfusion": {"vit_npz": _srcbt_npz, "resnet": _srcbt_resnet},
}
#: architecture → layouts it takes by path (a frozen encoder rebuilt when the model loads).
BY_PATH: Dict[str, tuple] = {"vsgnet": ("dinov2", "sam")}


def accepted() -> Dict[str, tuple]:
    """architecture → the layouts ``--backbone-weights`` accepts for it."""
    out = {a: tuple(p) for a, p in PLANS.items()}
    for a, layouts in BY_PATH.items():
        out[a] = out.get(a, ()) + layouts
    return out
