"""What the user must hear when training ends: a model that learned nothing, or a validation
split that cannot tell.

Judged on the validation confusion matrix of the saved (best) model, rows the reference: a
model whose overall accuracy is below always predicting the most frequent class has not
learned (a 16-bit tile trained as 8-bit data, say), and a validation split holding one class
gives perfect-looking scores that say nothing.
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np


def training_warnings(matrix: np.ndarray, names: Sequence[str]) -> List[str]:
    """Sentences (possibly none) about the model whose validation confusion matrix is
    ``matrix`` (reference × prediction, classes ``names``)."""
    reference = matrix.sum(axis=1)
    total = int(reference.sum())
    if total == 0:
        return ["the validation cells hold no labelled pixels, so the model was never judged; "
                "give more labelled area or a larger --val-fraction"]
    present = [names[i] for i in np.nonzero(reference)[0]]
    if len(present) == 1:
        return [f"the validation cells hold a single class ('{present[0]}'), so the scores "
                f"cannot tell whether the model separates the classes; give more labelled area "
                f"of the others or a larger --val-fraction"]
    accuracy = float(np.trace(matrix)) / total
    top = int(np.argmax(reference))
    floor = float(reference[top]) / total
    if accuracy < floor:
        return [f"the model is worse than always predicting the most frequent class "
                f"('{names[top]}') on its validation cells (overall accuracy {accuracy:.3f} "
                f"vs {floor:.3f}): it has not learned the task; check the labels and the "
                f"bands, the value range (16-bit or reflectance data: --normalisation image), "
                f"or train longer"]
    return []
