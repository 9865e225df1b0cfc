"""What a weight load did, as data and as one readable line."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional


def _listed(names: List[str], n: int = 3) -> str:
    if not names:
        return ""
    more = f" …+{len(names) - n}" if len(names) > n else ""
    return " (" + ", ".join(names[:n]) + more + ")"


@dataclass
class LoadReport:
    """Keys matched, missing (in the parts the file initialises) and unexpected (file keys that
    found no place), plus first-convolution band adaptations."""

    source: str
    layout: str
    parts: List[str]
    matched: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    adapted: Dict[str, str] = field(default_factory=dict)
    normalisation: Optional[str] = None
    hparams: Dict[str, object] = field(default_factory=dict)

    def line(self) -> str:
        """One line for logs and the card: what loaded where, what did not."""
        parts = ", ".join(self.parts) or "-"
        adapted = "".join(f"; {k} adapted {v}" for k, v in self.adapted.items())
        return (f"backbone weights {self.source} [{self.layout}] → {parts}: "
                f"{len(self.matched)} tensors matched, {len(self.missing)} missing"
                f"{_listed(self.missing)}, {len(self.unexpected)} unexpected"
                f"{_listed(self.unexpected)}{adapted}")

    def summary(self) -> Dict[str, object]:
        """A compact, JSON-able record for the model card."""
        return {"from": self.source, "layout": self.layout, "parts": self.parts,
                "matched": len(self.matched), "missing": len(self.missing),
                "unexpected": len(self.unexpected), "adapted": dict(self.adapted),
                "normalisation": self.normalisation}
