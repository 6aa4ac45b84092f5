"""The estimator contract, in scikit-learn's shape, that evaluation relies on.

The TF-IDF baseline (:class:`triage.models.baseline.TfidfBaseline`, over texts) and a field's head
(:class:`triage.models.head_fitting.HeadEstimator`, over :class:`triage.models.heads.HeadFeatures`)
both satisfy it, so evaluating a model beside the baseline
(:func:`triage.models.evaluation.evaluate_beside_baseline`) treats them alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, Self, TypeVar

import numpy as np

InputsT = TypeVar("InputsT", contravariant=True)
LabelsT = TypeVar("LabelsT", contravariant=True)


class Estimator(Protocol[InputsT, LabelsT]):
    """Learns labels from inputs; then gives each input's probability per class."""

    @property
    def classes_(self) -> Sequence[str]:
        """The labels, in the order of :meth:`predict_proba`'s columns."""
        ...

    def fit(self, X: InputsT, y: LabelsT) -> Self:
        """Learn from the inputs ``X`` and their labels ``y``; returns the estimator itself."""
        ...

    def predict_proba(self, X: InputsT) -> np.ndarray:
        """Probabilities ``(len(X), len(classes_))``, one row per input."""
        ...
