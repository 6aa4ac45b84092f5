"""Honest per-field metrics for a classifier's probabilities on held-out rows.

:func:`evaluate_field` scores one field: accuracy, macro/weighted F1 and per-class precision/recall
(scikit-learn's definitions), the confusion matrix, calibration (ECE and reliability bins), and the
precision-coverage curve from which the apply and suggest thresholds are chosen.

A threshold is chosen conservatively: the lowest one whose selected rows reach the target
precision *at the lower end of a one-sided Wilson interval* (95% by default), so a small or lucky
hold-out does not promise a precision that writes will not have.

True labels the model cannot predict (classes left out of its head as too rare) are kept: they
count as errors, appear in the per-class table with recall 0, enter the macro average, and are
listed under ``outside_head``.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, TypeVar

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from triage.models.estimator import Estimator

DEFAULT_BINS = 10
MIN_SELECTED = 30
"""A threshold must select at least this many rows (and 2% of them) before its precision counts."""
CURVE_POINTS = 101
CONFIDENCE_LEVEL = 0.95
"""One-sided confidence that a chosen threshold's precision reaches its target."""
MIN_SLICE_ROWS = 20
"""Fewest labelled hold-out rows a slice needs to be scored on its own."""

ModelInputsT = TypeVar("ModelInputsT")
BaselineInputsT = TypeVar("BaselineInputsT")


@dataclass(frozen=True)
class OperatingPoint:
    """What auto-acting on predictions with confidence >= ``threshold`` does on the evaluated rows."""

    threshold: float
    coverage: float
    precision: float
    selected: int
    #: Lower end of the one-sided Wilson interval of ``precision`` (equal to it without a level).
    precision_lower: float

    def to_dict(self) -> dict[str, float | int]:
        return {
            "threshold": self.threshold,
            "coverage": self.coverage,
            "precision": self.precision,
            "precision_lower": self.precision_lower,
            "selected": self.selected,
        }


@dataclass(frozen=True)
class ReliabilityBin:
    """Rows whose confidence falls in ``[lower, upper)`` (the last bin includes 1.0)."""

    lower: float
    upper: float
    count: int
    confidence: float | None
    accuracy: float | None


@dataclass(frozen=True)
class FieldEvaluation:
    """Metrics of one field; build with :func:`evaluate_field`."""

    field: str
    labels: list[str]
    n: int
    accuracy: float
    macro_f1: float
    weighted_f1: float
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    outside_head: dict[str, int]
    ece: float
    reliability: list[ReliabilityBin]
    apply_target: float
    suggest_target: float
    min_selected: int
    confidence_level: float | None
    apply: OperatingPoint | None
    suggest: OperatingPoint | None
    _confidence: np.ndarray = dataclasses.field(repr=False, compare=False)
    _correct: np.ndarray = dataclasses.field(repr=False, compare=False)
    _truth: np.ndarray = dataclasses.field(repr=False, compare=False)
    _predicted: np.ndarray = dataclasses.field(repr=False, compare=False)

    @property
    def n_outside_head(self) -> int:
        return sum(self.outside_head.values())

    @property
    def apply_threshold(self) -> float | None:
        """Lowest threshold reaching ``apply_target`` precision with confidence (None: unreachable)."""
        return self.apply.threshold if self.apply else None

    @property
    def apply_coverage(self) -> float:
        return self.apply.coverage if self.apply else 0.0

    @property
    def apply_precision(self) -> float | None:
        """Precision reached at ``apply_threshold`` (>= ``apply_target``)."""
        return self.apply.precision if self.apply else None

    @property
    def suggest_threshold(self) -> float | None:
        """Lowest threshold reaching ``suggest_target`` precision (None: unreachable)."""
        return self.suggest.threshold if self.suggest else None

    @property
    def suggest_coverage(self) -> float:
        return self.suggest.coverage if self.suggest else 0.0

    @property
    def suggest_precision(self) -> float | None:
        """Precision reached at ``suggest_threshold`` (>= ``suggest_target``)."""
        return self.suggest.precision if self.suggest else None

    def curve(self) -> list[OperatingPoint]:
        """Every operating point, from the highest threshold (least coverage) to the lowest."""
        return _curve(self._confidence, self._correct, self.confidence_level)

    def at_threshold(self, threshold: float) -> OperatingPoint:
        """Coverage and precision when acting on confidence >= ``threshold``."""
        selected = self._confidence >= threshold
        count = int(selected.sum())
        hits = int(self._correct[selected].sum())
        precision = hits / count if count else float("nan")
        lower = _wilson_lower(hits, count, self.confidence_level) if count else float("nan")
        return OperatingPoint(float(threshold), count / self.n, precision, count, lower)

    def class_evidence(self, threshold: float) -> dict[str, tuple[int, int, float]]:
        """Per predicted label, at confidence >= ``threshold``: (correct, selected, the lower end of
        the precision's one-sided Wilson interval); labels never selected are absent."""
        selected = self._confidence >= threshold
        out: dict[str, tuple[int, int, float]] = {}
        for label in np.unique(self._predicted[selected]):
            mine = selected & (self._predicted == label)
            count, hits = int(mine.sum()), int(self._correct[mine].sum())
            out[str(label)] = (hits, count, _wilson_lower(hits, count, self.confidence_level))
        return out

    def threshold_for_precision(self, precision: float) -> OperatingPoint | None:
        """The lowest-threshold operating point reaching ``precision`` on enough rows, or None."""
        return _lowest_reaching(self.curve(), precision, self.min_selected)

    def to_dict(self, curve_points: int = CURVE_POINTS) -> dict[str, Any]:
        """JSON-ready summary; the curve (column lists, highest threshold first) is thinned to about
        ``curve_points`` points."""
        return {
            "field": self.field,
            "labels": list(self.labels),
            "n": self.n,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "weighted_f1": self.weighted_f1,
            "per_class": self.per_class,
            "confusion": self.confusion,
            "outside_head": dict(self.outside_head),
            "n_outside_head": self.n_outside_head,
            "ece": self.ece,
            "reliability": [vars(b) for b in self.reliability],
            "apply_target": self.apply_target,
            "suggest_target": self.suggest_target,
            "min_selected": self.min_selected,
            "confidence_level": self.confidence_level,
            "apply": self.apply.to_dict() if self.apply else None,
            "suggest": self.suggest.to_dict() if self.suggest else None,
            "curve": _columns(_thin(self.curve(), curve_points)),
        }


def evaluate_field(
    field: str,
    y_true: Sequence[str],
    proba: np.ndarray,
    labels: Sequence[str],
    *,
    target_precision: float = 0.9,
    suggest_precision: float = 0.75,
    n_bins: int = DEFAULT_BINS,
    min_selected: int | None = None,
    confidence_level: float | None = CONFIDENCE_LEVEL,
) -> FieldEvaluation:
    """Score predicted probabilities ``proba`` (rows x ``labels``) against ``y_true``.

    The prediction is the arg-max label, its confidence the arg-max probability. ``min_selected``
    (default: the larger of 30 and 2% of the rows) is the fewest rows a threshold must select.
    Thresholds need the lower end of a one-sided Wilson interval at ``confidence_level`` to reach
    their target precision; ``None`` compares the point estimate instead.
    """
    if confidence_level is not None and not 0.5 <= confidence_level < 1.0:
        raise ValueError(f"confidence_level must be in [0.5, 1) or None, got {confidence_level}")
    labels = [str(label) for label in labels]
    if any(y is None or y != y for y in y_true):  # y != y: NaN
        raise ValueError("y_true has missing labels (None/NaN): evaluate labelled rows only")
    truth = np.asarray([str(y) for y in y_true], dtype=object)
    proba = _checked_proba(proba, len(truth), labels)
    for name, value in (("target_precision", target_precision), ("suggest_precision", suggest_precision)):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"{name} must be in (0, 1], got {value}")
    n = len(truth)
    if min_selected is None:
        min_selected = default_min_selected(n)

    best = proba.argmax(axis=1)
    predicted = np.asarray(labels, dtype=object)[best]
    confidence = proba[np.arange(n), best].astype(float)
    correct = predicted == truth

    head = set(labels)
    outside = Counter(str(y) for y in truth if y not in head)
    scored = labels + sorted(outside)  # labels outside the head still count in every average
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=scored, zero_division=0
    )
    per_class = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(scored)
    }
    curve = _curve(confidence, correct, confidence_level)
    return FieldEvaluation(
        field=field,
        labels=labels,
        n=n,
        accuracy=float(accuracy_score(truth, predicted)),
        macro_f1=float(f1_score(truth, predicted, labels=scored, average="macro", zero_division=0)),
        weighted_f1=float(f1_score(truth, predicted, labels=scored, average="weighted", zero_division=0)),
        per_class=per_class,
        confusion=_confusion(truth, best, labels),
        outside_head=dict(sorted(outside.items(), key=lambda kv: (-kv[1], kv[0]))),
        ece=expected_calibration_error(confidence, correct, n_bins),
        reliability=reliability_bins(confidence, correct, n_bins),
        apply_target=target_precision,
        suggest_target=suggest_precision,
        min_selected=min_selected,
        confidence_level=confidence_level,
        apply=_lowest_reaching(curve, target_precision, min_selected),
        suggest=_lowest_reaching(curve, suggest_precision, min_selected),
        _confidence=confidence,
        _correct=correct,
        _truth=truth,
        _predicted=predicted,
    )


def apply_gap(model: FieldEvaluation, other: FieldEvaluation, other_name: str) -> str | None:
    """A warning when ``model`` reaches no apply threshold and ``other`` does (on the same rows).

    Such a head never writes the field: every ticket stays a suggestion at best.
    """
    if model.apply is not None or other.apply is None:
        return None
    return (
        f"{model.field}: reaches no apply threshold at precision {model.apply_target:.2f}, where the "
        f"{other_name} covers {other.apply_coverage:.0%}: with it the field is never written"
    )


@dataclass(frozen=True)
class FieldComparison:
    """A field's model beside the baseline on the same labelled hold-out rows, overall and per slice."""

    model: FieldEvaluation
    baseline: FieldEvaluation
    slices: dict[str, tuple[FieldEvaluation, FieldEvaluation]] = dataclasses.field(default_factory=dict)
    """``"<column>=<value>"`` -> (model, baseline) on that slice's labelled rows, for every slice with
    at least :data:`MIN_SLICE_ROWS` of them."""


def evaluate_beside_baseline(
    field: str,
    y_true: Sequence[str | None],
    model: Estimator[ModelInputsT, Any],
    model_inputs: ModelInputsT,
    baseline: Estimator[BaselineInputsT, Any],
    baseline_inputs: BaselineInputsT,
    *,
    slice_column: str | None = None,
    slice_values: Sequence[object] | None = None,
    target_precision: float = 0.9,
    suggest_precision: float = 0.75,
) -> FieldComparison:
    """Score the fitted ``model`` and ``baseline`` (:func:`evaluate_field`) on the same hold-out rows.

    ``model_inputs`` and ``baseline_inputs`` are those rows as each estimator takes them, ``y_true``
    their labels (None: unlabelled, not scored). With ``slice_column``, each of its values in
    ``slice_values`` (one per row) is scored on its own too, where it has :data:`MIN_SLICE_ROWS`
    labelled rows. Both trainings' and a stored version's evaluations come from here, so their
    reports compare alike.
    """
    labelled = np.array([y is not None and y == y for y in y_true], dtype=bool)  # y == y: not NaN
    truth = [str(y) for y, keep in zip(y_true, labelled, strict=True) if keep]
    scored: list[tuple[np.ndarray, Sequence[str]]] = [
        (model.predict_proba(model_inputs)[labelled], model.classes_),
        (baseline.predict_proba(baseline_inputs)[labelled], baseline.classes_),
    ]

    def score(keep: np.ndarray | None = None) -> tuple[FieldEvaluation, FieldEvaluation]:
        part = truth if keep is None else [t for t, inside in zip(truth, keep, strict=True) if inside]
        model_eval, baseline_eval = (
            evaluate_field(
                field,
                part,
                proba if keep is None else proba[keep],
                list(classes),
                target_precision=target_precision,
                suggest_precision=suggest_precision,
            )
            for proba, classes in scored
        )
        return model_eval, baseline_eval

    overall = score()
    slices: dict[str, tuple[FieldEvaluation, FieldEvaluation]] = {}
    if slice_column is not None:
        if slice_values is None:
            raise ValueError(f"slice column {slice_column!r} given without its values")
        values = np.asarray(slice_values, dtype=object)[labelled]
        for value in sorted({v for v in values if v is not None}):
            inside = values == value
            if inside.sum() >= MIN_SLICE_ROWS:
                slices[f"{slice_column}={value}"] = score(inside)
    return FieldComparison(*overall, slices)


@dataclass(frozen=True)
class MacroF1Comparison:
    """Model minus baseline macro-F1 on the same rows, with a paired bootstrap interval."""

    difference: float
    low: float
    high: float
    level: float
    resamples: int

    @property
    def significant(self) -> bool:
        """Whether the interval excludes zero (the difference is unlikely to be noise)."""
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, float | int | bool]:
        return {**vars(self), "significant": self.significant}


def compare_macro_f1(
    model: FieldEvaluation,
    baseline: FieldEvaluation,
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> MacroF1Comparison | None:
    """Paired bootstrap of ``model.macro_f1 - baseline.macro_f1`` over the evaluated rows.

    Rows are resampled with replacement, the same rows for both, and the percentile interval at
    ``level`` is returned. None when the two were not evaluated on the same rows.
    """
    if model.n != baseline.n or not np.array_equal(model._truth, baseline._truth):
        return None
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, model.n, size=(resamples, model.n))
    samples = _bootstrap_macro_f1(model, rows) - _bootstrap_macro_f1(baseline, rows)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return MacroF1Comparison(model.macro_f1 - baseline.macro_f1, float(low), float(high), level, resamples)


def _bootstrap_macro_f1(evaluation: FieldEvaluation, rows: np.ndarray) -> np.ndarray:
    """Macro-F1 (over the evaluation's scored labels) of each resample of ``rows``."""
    scored = list(evaluation.per_class)
    index = {label: i for i, label in enumerate(scored)}
    k = len(scored) + 1  # the last slot takes predictions outside the scored labels (never happens)
    truth = np.array([index[y] for y in evaluation._truth])[rows]
    predicted = np.array([index.get(p, k - 1) for p in evaluation._predicted])[rows]
    offset = np.arange(len(rows))[:, None] * k

    def counts(values: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
        flat = (values + offset).ravel() if keep is None else (values + offset)[keep]
        return np.bincount(flat, minlength=len(rows) * k).reshape(len(rows), k)[:, : k - 1]

    hits = counts(truth, truth == predicted)
    denominator = counts(truth) + counts(predicted)
    f1 = np.divide(2 * hits, denominator, out=np.zeros(hits.shape), where=denominator > 0)
    return f1.mean(axis=1)


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = DEFAULT_BINS
) -> float:
    """Sum over equal-width confidence bins of (bin share) x |bin accuracy - bin mean confidence|."""
    bins = reliability_bins(confidence, correct, n_bins)
    n = len(confidence)
    return float(
        sum(b.count / n * abs(b.accuracy - b.confidence) for b in bins if b.count)  # type: ignore[operator]
    )


def reliability_bins(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = DEFAULT_BINS
) -> list[ReliabilityBin]:
    """Equal-width bins ``[i/n_bins, (i+1)/n_bins)`` with their mean confidence and accuracy."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    index = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    out = []
    for i in range(n_bins):
        inside = index == i
        count = int(inside.sum())
        out.append(
            ReliabilityBin(
                lower=i / n_bins,
                upper=(i + 1) / n_bins,
                count=count,
                confidence=float(confidence[inside].mean()) if count else None,
                accuracy=float(correct[inside].mean()) if count else None,
            )
        )
    return out


def _checked_proba(proba: Any, n: int, labels: list[str]) -> np.ndarray:
    if not labels:
        raise ValueError("labels is empty")
    if len(set(labels)) != len(labels):
        raise ValueError("labels contains duplicates")
    if n == 0:
        raise ValueError("nothing to evaluate: y_true is empty")
    proba = np.asarray(proba, dtype=float)
    if proba.shape != (n, len(labels)):
        raise ValueError(f"proba has shape {proba.shape}, expected ({n}, {len(labels)}) for rows x labels")
    if not np.isfinite(proba).all() or proba.min() < 0.0 or proba.max() > 1.0 + 1e-6:
        raise ValueError("proba must hold probabilities in [0, 1] (no NaN)")
    return proba


def _confusion(truth: np.ndarray, best: np.ndarray, labels: list[str]) -> list[list[int]]:
    """Rows: true label, columns: predicted label, both over the head's labels."""
    position = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for y, p in zip(truth, best, strict=True):
        if y in position:
            matrix[position[y], p] += 1
    return matrix.tolist()


def _curve(confidence: np.ndarray, correct: np.ndarray, level: float | None) -> list[OperatingPoint]:
    """One point per distinct confidence value, as the threshold that selects rows >= it."""
    order = np.argsort(-confidence, kind="stable")
    conf = confidence[order]
    hits = np.cumsum(correct[order])
    n = len(conf)
    # the last index of each run of equal confidences: selecting ">= value" takes the whole run
    ends = np.flatnonzero(np.r_[conf[1:] != conf[:-1], True])
    return [
        OperatingPoint(
            float(conf[i]),
            float((i + 1) / n),
            float(hits[i] / (i + 1)),
            int(i + 1),
            _wilson_lower(int(hits[i]), int(i + 1), level),
        )
        for i in ends
    ]


def default_min_selected(n: int) -> int:
    """Fewest rows a threshold must select on ``n`` evaluated rows: the larger of
    :data:`MIN_SELECTED` and 2% of them."""
    return max(MIN_SELECTED, math.ceil(0.02 * n))


def threshold_for_precision(
    confidence: np.ndarray,
    correct: np.ndarray,
    precision: float,
    *,
    min_selected: int,
    confidence_level: float | None = CONFIDENCE_LEVEL,
) -> OperatingPoint | None:
    """The lowest threshold on ``confidence`` whose selected rows (``correct``: right or not) reach
    ``precision`` at the lower end of the one-sided Wilson interval, selecting at least
    ``min_selected`` rows; None where none does. The rule every field's thresholds follow, for
    scores that are not a field's arg-max (a tag's own probability)."""
    return _lowest_reaching(_curve(confidence, correct, confidence_level), precision, min_selected)


def _wilson_lower(hits: int, n: int, level: float | None) -> float:
    """Lower end of the one-sided Wilson score interval of ``hits / n`` (the estimate itself if no level)."""
    p = hits / n
    if level is None:
        return p
    z = NormalDist().inv_cdf(level)
    denominator = 1 + z * z / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - margin) / denominator)


def _lowest_reaching(
    curve: list[OperatingPoint], precision: float, min_selected: int
) -> OperatingPoint | None:
    reaching = [p for p in curve if p.selected >= min_selected and p.precision_lower >= precision - 1e-12]
    return reaching[-1] if reaching else None


def _columns(points: list[OperatingPoint]) -> dict[str, list[float | int]]:
    return {
        key: [getattr(p, key) for p in points]
        for key in ("threshold", "coverage", "precision", "precision_lower", "selected")
    }


def _thin(points: list[OperatingPoint], limit: int) -> list[OperatingPoint]:
    if len(points) <= limit:
        return points
    keep = np.unique(np.linspace(0, len(points) - 1, limit).round().astype(int))
    return [points[i] for i in keep]
