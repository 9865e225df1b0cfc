"""Fine-tuning from a base model (``train --init base.rsmodel``): the path to a new sensor.

The base model's weights load where names and shapes match; its normalisation mode and GSD
become the defaults, so the new imagery is seen as the base model saw its own; the learning rate
defaults lower (the features are already useful; a full rate would wash them out on a handful
of samples).  ``--init-head new`` re-initialises the classifier so the classes may change.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import torch

from ..jobs import InputError
from ..formats.modelfile import load_model, read_card
from ..models import build

INIT_HEADS = ("keep", "new")
FINETUNE_LR_SCALE = 0.3  # of the recipe's rate when fine-tuning and --lr is not given


def base_card(path: str) -> Dict[str, Any]:
    """The card of the ``--init`` model (header only)."""
    return read_card(path)


def check_compatible(base: Mapping[str, Any], task: str, bands: int,
                     class_values: List[int], init_head: str) -> None:
    """Explain in one sentence when the base model cannot start this training."""
    if init_head not in INIT_HEADS:
        raise InputError(f"--init-head must be one of {', '.join(INIT_HEADS)} (got {init_head!r})")
    if base["task"] not in (task, "pretrained"):
        raise InputError(f"the --init model is a {base['task']} model; fine-tuning for {task} "
                         f"needs a {task} model (or a pre-trained backbone)")
    main = "t1" if base["task"] == "change" else "image"
    base_bands = len(base["inputs"][main]["bands"])
    if base_bands != bands:
        names = ",".join(b["name"] for b in base["inputs"][main]["bands"])
        raise InputError(f"the --init model expects {base_bands} bands ({names}); the training "
                         f"images have {bands}. Pick matching imagery or train from scratch")
    if base["task"] == "pretrained" or init_head == "new":
        return
    base_values = [c["value"] for c in base["classes"]]
    if base_values != class_values:
        raise InputError(f"the --init model has classes {base_values} but the labels have "
                         f"{class_values}; add --init-head new to re-map the classes (the "
                         f"classifier is trained anew, the rest is kept)")


def class_dependent_keys(arch: str, hparams: Mapping[str, Any]) -> set:
    """Names of the tensors whose shape depends on the number of classes (the head)."""
    hp = dict(hparams)
    a = build(arch, **hp).state_dict()
    hp["num_classes"] = int(hp["num_classes"]) + 1
    b = build(arch, **hp).state_dict()
    return {k for k in a if k not in b or a[k].shape != b[k].shape}


def init_from(network: torch.nn.Module, path: str, arch: str, hparams: Mapping[str, Any],
              init_head: str = "keep") -> Dict[str, Any]:
    """Load the base model's tensors whose names and shapes match (not the head with
    ``init_head='new'``); report what loaded."""
    other = load_model(path).network.state_dict()
    own = network.state_dict()
    skip = class_dependent_keys(arch, hparams) if init_head == "new" else set()
    loaded = [k for k, v in other.items()
              if k in own and own[k].shape == v.shape and k not in skip]
    fresh = sorted(set(own) - set(loaded))
    network.load_state_dict({k: other[k] for k in loaded}, strict=False)
    return {"from": str(path), "loaded": len(loaded), "skipped": len(fresh),
            "skipped_names": fresh[:20], "head": init_head}


def inherited(base: Mapping[str, Any], normalisation: Optional[str],
              gsd: Optional[float]) -> Dict[str, Any]:
    """Normalisation mode and GSD for fine-tuning: the user's, else the base model's."""
    main = "t1" if base["task"] == "change" else "image"
    return {"normalisation": normalisation or base["inputs"][main].get("normalisation", "dataset"),
            "gsd": gsd if gsd is not None else base.get("gsd_m")}


# hyper-parameters a run sets from its own data, not from the model it starts from
DATA_HPARAMS = ("in_channels", "num_classes", "aux_channels")


def inherited_network(base: Mapping[str, Any], arch: Optional[str],
                      hparams: Mapping[str, Any]) -> Dict[str, Any]:
    """``arch`` and ``hparams`` of a fine-tune: the base model's architecture and
    hyper-parameters (another network would load almost none of its weights), the user's
    ``hparams`` on top; a different ``arch`` is refused in one sentence."""
    own = base["architecture"]
    if arch is not None and arch != own:
        raise InputError(f"the --init model is a {own} network; fine-tuning keeps its "
                         f"architecture (leave out --arch, or give --arch {own}), or train a "
                         f"{arch} from scratch without --init")
    kept = {k: v for k, v in base.get("hparams", {}).items() if k not in DATA_HPARAMS}
    return {"arch": own, "hparams": {**kept, **hparams}}
