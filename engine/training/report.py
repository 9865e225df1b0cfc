"""Training report written next to the model: JSON history and loss/metric curves (PNG)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

from ..jobs import atomic_output


def report_paths(out: str | Path) -> Dict[str, Path]:
    """The report files of model ``out``: ``<stem>.history.json`` and ``<stem>.curves.png``."""
    p = Path(out)
    return {"history": p.with_name(p.stem + ".history.json"),
            "curves": p.with_name(p.stem + ".curves.png")}


def write_report(out: str | Path, history: List[Dict[str, Any]], metric_name: str) -> Dict[str, str]:
    """Write the history and the curves; returns their paths."""
    paths = report_paths(out)
    with atomic_output(paths["history"]) as tmp:
        tmp.write_text(json.dumps({"metric": metric_name, "epochs": history}, indent=1))
    _plot(paths["curves"], history, metric_name)
    return {k: str(v) for k, v in paths.items()}


def _plot(path: Path, history: List[Dict[str, Any]], metric_name: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(9, 3.6), dpi=100)
    ax_loss, ax_metric = fig.subplots(1, 2)
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        values = [h[key] for h in history]
        if any(v is not None for v in values):
            ax_loss.plot(epochs, values, marker="o", ms=3, label=label)
    ax_loss.set(title="loss", xlabel="epoch")
    ax_loss.legend()
    ax_metric.plot(epochs, [h["metric"] for h in history], marker="o", ms=3, color="tab:green",
                   label=metric_name)
    oa = [h["val"].get("overall_accuracy") for h in history]
    if any(v is not None for v in oa):
        ax_metric.plot(epochs, oa, marker="o", ms=3, color="tab:gray", label="overall accuracy")
    ax_metric.set(title=f"validation {metric_name}", xlabel="epoch", ylim=(0, 1))
    ax_metric.legend()
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
