"""The optional tags head: which of the helpdesk's tags a ticket should carry (multi-label).

On when :attr:`TrainConfig.tags <triage.models.training_config.TrainConfig.tags>` is set
(``model.train_options: {tags: true}``) and the training data has tags: a ``tags`` column (a list,
or text separated by commas; the train flow's history has it) or ``tag_1`` .. ``tag_n`` columns.
Tags are compared case-insensitively, as Freshdesk does.

Every tag with at least :data:`MIN_TAG_ROWS` training rows is learned: one logistic regression per
tag (one-vs-rest) over the fields' own embedding and TF-IDF blocks, fitted together as one linear
layer with a sigmoid per tag (:func:`triage.models.head_fitting.fit_head` with ``multilabel``): one
L-BFGS fit, the cost of one more field head however many tags there are. Each tag gets its own apply
and suggest thresholds, the lowest probability at which that tag's hold-out predictions reach
``target_precision`` (``suggest_precision``) at the lower end of the one-sided Wilson interval, the
rule the fields' thresholds follow (:func:`triage.models.evaluation.threshold_for_precision`). A tag
with no apply threshold, or with fewer than ``min_examples_per_class`` training rows, is suggest-only.
The head is scored on the hold-out beside a TF-IDF + one-vs-rest logistic-regression baseline
trained on the same rows (:class:`TagsBaseline`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import f1_score, precision_recall_fscore_support

from triage.models.baseline import as_texts, tfidf_features
from triage.models.evaluation import CONFIDENCE_LEVEL, OperatingPoint, threshold_for_precision
from triage.models.head_fitting import C_SPARSE, OFF, Strengths, fit_head
from triage.models.heads import FieldHead, HeadFeatures, SparseRows
from triage.models.manifest import TagsManifest, ThresholdPoint
from triage.models.training_config import TrainConfig

TAGS: Final = "tags"
"""The field name of tags: the training table's column, ``model.json``'s section, the predictions' field."""
TAG_COLUMN = re.compile(r"tag_(\d+)")
"""Numbered tag columns (``tag_1`` .. ``tag_9``), read where the table has no ``tags`` column."""
MIN_TAG_ROWS = 5
"""Fewest training rows a tag needs to be learned (rarer tags are left out and reported)."""
C_DENSE = 0.01
"""Inverse L2 strength of the tags head's embedding weights (the middle of the fields' grid)."""
MIN_SELECTED = 10
"""Fewest hold-out predictions a tag's threshold must select, as a field's class needs to be applied
(:data:`triage.models.training.MIN_CLASS_EVIDENCE`); the Wilson interval's lower end asks for more
where the precision is not clear: at a target of 0.9, 25 predictions that are all right."""
DECISION = 0.5
"""The probability at which a tag counts as predicted in the per-tag precision/recall/F1."""


def has_tags(frame: pd.DataFrame) -> bool:
    """Whether ``frame`` has a ``tags`` column or numbered ``tag_<n>`` columns."""
    return TAGS in frame.columns or any(TAG_COLUMN.fullmatch(str(c)) for c in frame.columns)


def read_tags(frame: pd.DataFrame) -> list[tuple[str, ...]]:
    """Each row's tags, cleaned (stripped, empty ones dropped, one spelling per tag ignoring case), sorted."""
    if TAGS in frame.columns:
        rows: Iterable[Iterable[object]] = (_items(value) for value in frame[TAGS])
    else:
        numbered = sorted(
            (c for c in map(str, frame.columns) if TAG_COLUMN.fullmatch(c)), key=lambda c: int(c[4:])
        )
        rows = frame[numbered].itertuples(index=False)
    return [clean_tags(row) for row in rows]


def _items(value: object) -> list[object]:
    if isinstance(value, str):
        return list(value.split(","))
    if isinstance(value, list | tuple | np.ndarray):
        return list(value)
    return []  # None, NaN


def clean_tags(values: Iterable[object]) -> tuple[str, ...]:
    """Tags as text, stripped, without empties or case-insensitive repeats, sorted."""
    seen: dict[str, str] = {}
    for value in values:
        if value is None or (isinstance(value, float) and value != value):  # NaN
            continue
        tag = str(value).strip()
        if tag:
            seen.setdefault(tag.lower(), tag)
    return tuple(sorted(seen.values()))


def plan_tags(rows: Iterable[tuple[str, ...]]) -> tuple[list[str], dict[str, int]]:
    """The tags learned (at least :data:`MIN_TAG_ROWS` training rows) and those left out, with counts."""
    counts = Counter(tag for row in rows for tag in row)
    kept = sorted(tag for tag, n in counts.items() if n >= MIN_TAG_ROWS)
    left_out = {t: n for t, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n < MIN_TAG_ROWS}
    return kept, left_out


def multi_hot(rows: Sequence[tuple[str, ...]], tags: Sequence[str]) -> np.ndarray:
    """``(rows, tags)`` 0/1 matrix (float32): whether each row carries each tag (ignoring case)."""
    position = {tag.lower(): i for i, tag in enumerate(tags)}
    out = np.zeros((len(rows), len(tags)), dtype=np.float32)
    for r, row in enumerate(rows):
        for tag in row:
            i = position.get(tag.lower())
            if i is not None:
                out[r, i] = 1.0
    return out


def fit_tags(head: FieldHead, features: HeadFeatures, targets: np.ndarray, config: TrainConfig) -> None:
    """Fit the tags head on the training rows' ``features`` and 0/1 ``targets`` (one L-BFGS fit)."""
    device = features.embeddings.device
    sparse = None
    if features.sparse is not None:
        sparse = SparseRows.from_csr(features.sparse, device, for_training=True)
    strengths: Strengths = (C_DENSE, (config.c_sparse or C_SPARSE) if sparse is not None else OFF, OFF)
    fit_head(
        head,
        (features.embeddings, sparse, None),
        torch.from_numpy(targets).to(device),
        torch.ones(len(targets), device=device),
        strengths,
        config.max_iter,
        multilabel=True,
    )


class TagsBaseline:
    """TF-IDF (the fields' baseline n-grams, scikit-learn) + one logistic regression per tag (C=10).

    The per-tag regressions are fitted together by one L-BFGS run (:func:`fit_head` with
    ``multilabel``, whose every output is scikit-learn's logistic regression at the same ``C``:
    tested); scikit-learn's one-vs-rest fits them one by one, 8x slower on 39 tags.
    """

    def __init__(self, C: float = 10.0, max_features: int | None = None, max_iter: int = 1000) -> None:
        self.C, self.max_features, self.max_iter = C, max_features, max_iter

    def fit(self, texts: Sequence[str], targets: np.ndarray) -> TagsBaseline:
        self.tfidf_ = tfidf_features(self.max_features)
        matrix = self.tfidf_.fit_transform(as_texts(texts))
        self.head_ = FieldHead(1, matrix.shape[1], targets.shape[1])
        fit_head(
            self.head_,
            (torch.zeros(len(targets), 1), SparseRows.from_csr(matrix, for_training=True), None),
            torch.from_numpy(targets.astype(np.float32)),
            torch.ones(len(targets)),
            (OFF, self.C, OFF),
            self.max_iter,
            multilabel=True,
        )
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """``(texts, tags)`` probabilities, each tag on its own."""
        rows = SparseRows.from_csr(self.tfidf_.transform(as_texts(texts)))
        with torch.inference_mode():
            return torch.sigmoid(self.head_(torch.zeros(len(texts), 1), rows)).numpy().astype(np.float64)


@dataclass(frozen=True)
class TagsEvaluation:
    """Tag probabilities scored against the true tags of the hold-out rows."""

    tags: list[str]
    n: int
    per_tag: dict[str, dict[str, float | int]]
    """Per tag at probability :data:`DECISION`: precision, recall, F1 and support (hold-out rows with it)."""
    micro_f1: float
    macro_f1: float
    apply: dict[str, OperatingPoint | None]
    """Per tag, the lowest probability reaching ``apply_target`` (Wilson lower end), or None."""
    suggest: dict[str, OperatingPoint | None]
    apply_target: float
    suggest_target: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "micro_f1": self.micro_f1,
            "macro_f1": self.macro_f1,
            "apply_target": self.apply_target,
            "suggest_target": self.suggest_target,
            "per_tag": {
                tag: {
                    **scores,
                    "apply": _point_dict(self.apply[tag]),
                    "suggest": _point_dict(self.suggest[tag]),
                }
                for tag, scores in self.per_tag.items()
            },
        }


def _point_dict(point: OperatingPoint | None) -> dict[str, float | int] | None:
    return point.to_dict() if point is not None else None


def evaluate_tags(
    truth: np.ndarray,
    proba: np.ndarray,
    tags: Sequence[str],
    *,
    target_precision: float,
    suggest_precision: float,
    confidence_level: float | None = CONFIDENCE_LEVEL,
) -> TagsEvaluation:
    """Score ``proba`` (rows x ``tags``) against the 0/1 ``truth``: per-tag precision/recall/F1 at
    :data:`DECISION`, micro and macro F1, and each tag's apply and suggest thresholds (selecting at
    least :data:`MIN_SELECTED` rows)."""
    if truth.shape != proba.shape:
        raise ValueError(f"truth {truth.shape} and probabilities {proba.shape} differ in shape")
    actual = truth.astype(bool)
    predicted = proba >= DECISION
    precision, recall, f1, support = precision_recall_fscore_support(
        actual, predicted, average=None, zero_division=0
    )

    def point(j: int, target: float) -> OperatingPoint | None:
        return threshold_for_precision(
            proba[:, j].astype(float),
            actual[:, j],
            target,
            min_selected=MIN_SELECTED,
            confidence_level=confidence_level,
        )

    return TagsEvaluation(
        tags=list(tags),
        n=len(truth),
        per_tag={
            tag: {
                "precision": float(precision[j]),
                "recall": float(recall[j]),
                "f1": float(f1[j]),
                "support": int(support[j]),
            }
            for j, tag in enumerate(tags)
        },
        micro_f1=float(f1_score(actual, predicted, average="micro", zero_division=0)),
        macro_f1=float(f1_score(actual, predicted, average="macro", zero_division=0)),
        apply={tag: point(j, target_precision) for j, tag in enumerate(tags)},
        suggest={tag: point(j, suggest_precision) for j, tag in enumerate(tags)},
        apply_target=target_precision,
        suggest_target=suggest_precision,
    )


@dataclass
class TagsOutcome:
    """What training did for tags: the learned tags, their evaluation beside the baseline's."""

    tags: list[str]
    left_out: dict[str, int]
    """Tags with fewer than :data:`MIN_TAG_ROWS` training rows, with their counts: not learned."""
    train_counts: dict[str, int]
    n_train: int
    n_test: int
    evaluation: TagsEvaluation
    baseline: TagsEvaluation
    min_rows: int
    """``min_examples_per_class``: fewer training rows make a tag suggest-only."""

    @property
    def suggest_only(self) -> dict[str, str]:
        """Tags suggested but never applied, with why: too few training rows, or no apply threshold."""
        out: dict[str, str] = {}
        for tag in self.tags:
            rows = self.train_counts.get(tag, 0)
            if rows < self.min_rows:
                out[tag] = f"{rows} training rows (fewer than {self.min_rows})"
            elif self.evaluation.apply[tag] is None:
                out[tag] = (
                    f"its hold-out predictions reach precision {self.evaluation.apply_target:.2f} at no "
                    "probability (lower end of the 95% Wilson interval)"
                )
        return out

    @property
    def apply_warning(self) -> str | None:
        """Set when the head reaches no apply threshold for any tag on the hold-out but the baseline does
        (as :func:`triage.models.evaluation.apply_gap` for a field)."""
        model, baseline = self.evaluation, self.baseline
        theirs = [tag for tag in self.tags if baseline.apply[tag] is not None]
        if any(model.apply[tag] is not None for tag in self.tags) or not theirs:
            return None
        names = ", ".join(theirs[:5]) + (", ..." if len(theirs) > 5 else "")
        return (
            f"tags: reaches no apply threshold at precision {model.apply_target:.2f} for any tag, where the "
            f"baseline does for {len(theirs)} ({names}): with it no tag is ever added"
        )

    def manifest(self) -> TagsManifest:
        """``model.json``'s ``tags`` section."""
        model, baseline = self.evaluation, self.baseline
        return TagsManifest(
            labels=self.tags,
            apply={tag: _threshold(model.apply[tag], model.apply_target) for tag in self.tags},
            suggest={tag: _threshold(model.suggest[tag], model.suggest_target) for tag in self.tags},
            left_out=self.left_out,
            suggest_only=self.suggest_only,
            n_train=self.n_train,
            n_test=self.n_test,
            metrics={
                "micro_f1": model.micro_f1,
                "macro_f1": model.macro_f1,
                "baseline_micro_f1": baseline.micro_f1,
                "baseline_macro_f1": baseline.macro_f1,
            },
        )

    def report(self) -> dict[str, Any]:
        """The report's ``tags`` section: the field's metrics and each tag's beside the baseline's."""
        return {
            "n_train": self.n_train,
            "n_test": self.n_test,
            "left_out": self.left_out,
            "suggest_only": self.suggest_only,
            "train_counts": {tag: self.train_counts.get(tag, 0) for tag in self.tags},
            "model": self.evaluation.to_dict(),
            "baseline": self.baseline.to_dict(),
        }


def _threshold(point: OperatingPoint | None, target: float) -> ThresholdPoint:
    if point is None:
        return ThresholdPoint(target=target, threshold=None)
    return ThresholdPoint(
        target=target, threshold=point.threshold, coverage=point.coverage, precision=point.precision
    )


@dataclass(frozen=True)
class TagCounts:
    """One tags head's predictions on tickets, counted per ticket: micro-F1 at :data:`DECISION` and the
    precision of the tags it would add (at or above their apply threshold, not suggest-only)."""

    true_positive: np.ndarray
    false_positive: np.ndarray
    false_negative: np.ndarray
    added: np.ndarray
    added_right: np.ndarray

    def micro_f1(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Micro-F1 over ``rows`` (the last axis; every ticket by default)."""
        tp, fp, fn = (
            c[rows].sum(axis=-1) for c in (self.true_positive, self.false_positive, self.false_negative)
        )
        denominator = 2 * tp + fp + fn
        return np.divide(2 * tp, denominator, out=np.zeros(np.shape(tp)), where=denominator > 0)

    def precision(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Precision of the tags added over ``rows``; NaN where none is added."""
        added, right = self.added[rows].sum(axis=-1), self.added_right[rows].sum(axis=-1)
        return np.divide(right, added, out=np.full(np.shape(added), np.nan), where=added > 0)


def count_tags(
    truth: Sequence[tuple[str, ...]], proba: np.ndarray, head: TagsManifest, scored: Sequence[str]
) -> TagCounts:
    """``head``'s probabilities (``proba``, columns following ``head.labels``) against the tickets' true
    tags, counted per ticket. F1 counts the ``scored`` tags (both compared heads' together): a tag the
    head does not know is never predicted, so it counts against it where a ticket has it."""
    actual = multi_hot(truth, scored).astype(bool)
    column = {tag.lower(): j for j, tag in enumerate(scored)}
    predicted = np.zeros_like(actual)
    added = np.zeros_like(actual)
    for j, tag in enumerate(head.labels):
        k = column[tag.lower()]
        predicted[:, k] = proba[:, j] >= DECISION
        threshold = head.apply[tag].threshold
        if threshold is not None and tag not in head.suggest_only:
            added[:, k] = proba[:, j] >= threshold
    return TagCounts(
        true_positive=(predicted & actual).sum(axis=1),
        false_positive=(predicted & ~actual).sum(axis=1),
        false_negative=(~predicted & actual).sum(axis=1),
        added=added.sum(axis=1),
        added_right=(added & actual).sum(axis=1),
    )


def addable(head: TagsManifest) -> list[str]:
    """The tags ``head`` may add: an apply threshold, and not suggest-only."""
    return [t for t in head.labels if head.apply[t].threshold is not None and t not in head.suggest_only]


@dataclass(frozen=True)
class Difference:
    """Candidate minus current on the same tickets, with a paired bootstrap interval."""

    candidate: float
    current: float
    low: float
    high: float

    @property
    def difference(self) -> float:
        return self.candidate - self.current

    def worse(self, tolerance: float) -> bool:
        """Worse beyond ``tolerance`` and beyond noise: the whole interval below zero."""
        return self.difference < -tolerance and self.high < 0


@dataclass(frozen=True)
class TagsComparison:
    """A candidate's tags head beside the current one's on tickets neither trained on."""

    tickets: int
    micro_f1: Difference
    precision: Difference | None
    """Of the tags each would add; None where one of them adds none on these tickets."""
    added: tuple[int, int]
    """Tags the candidate and the current head would add on these tickets."""
    addable: tuple[int, int]
    """Tags each head may add at all (an apply threshold, not suggest-only)."""
    level: float

    def problems(self, tolerance: float, current: str) -> list[str]:
        """Why the candidate's tags are worse than ``current``'s (empty: they are not)."""
        out = []
        interval = f"{self.level:.0%} interval"
        for name, d in (("micro-F1", self.micro_f1), ("precision of the tags added", self.precision)):
            if d is not None and d.worse(tolerance):
                out.append(
                    f"tags {name} {d.candidate:.3f} < {d.current:.3f} ({interval} of the difference "
                    f"{d.low:+.3f} to {d.high:+.3f}, below zero)"
                )
        if not self.addable[0] and self.addable[1]:
            out.append(
                f"tags: reaches no apply threshold for any tag, where {current} may add {self.addable[1]}"
            )
        return out

    def summary(self) -> str:
        text = f"tags micro-F1 {self.micro_f1.candidate:.3f} vs {self.micro_f1.current:.3f}"
        if self.precision is not None:
            text += f", precision of the tags added {self.precision.candidate:.3f} vs {self.precision.current:.3f}"
        return text + f" ({self.added[0]} vs {self.added[1]} added)"

    def to_dict(self) -> dict[str, float | None]:
        """``Promotion.comparison``'s ``tags`` row."""
        p = self.precision
        return {
            "candidate_micro_f1": self.micro_f1.candidate,
            "current_micro_f1": self.micro_f1.current,
            "micro_f1_low": self.micro_f1.low,
            "micro_f1_high": self.micro_f1.high,
            "candidate_added_precision": p.candidate if p else None,
            "current_added_precision": p.current if p else None,
            "added_precision_low": p.low if p else None,
            "added_precision_high": p.high if p else None,
            "candidate_added": self.added[0],
            "current_added": self.added[1],
            "tickets": self.tickets,
        }


def compare_tags(
    truth: Sequence[tuple[str, ...]],
    candidate: tuple[TagsManifest, np.ndarray],
    current: tuple[TagsManifest, np.ndarray],
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> TagsComparison:
    """Two tags heads (manifest section, probabilities on the same tickets) scored on the tickets' true
    ``truth`` tags: micro-F1 over both heads' tags, and the precision of the tags each would add, each
    with a paired bootstrap interval of the difference (tickets resampled, the same for both)."""
    scored = sorted({t.lower() for head, _ in (candidate, current) for t in head.labels})
    mine, theirs = (count_tags(truth, proba, head, scored) for head, proba in (candidate, current))
    rows = np.random.default_rng(seed).integers(0, len(truth), size=(resamples, len(truth)))
    tail = (1 - level) / 2 * 100

    def difference(metric: str) -> Difference | None:
        point = [float(getattr(c, metric)()) for c in (mine, theirs)]
        if any(np.isnan(point)):
            return None
        samples = getattr(mine, metric)(rows) - getattr(theirs, metric)(rows)
        low, high = np.nanpercentile(samples, [tail, 100 - tail])
        return Difference(point[0], point[1], float(low), float(high))

    f1 = difference("micro_f1")
    assert f1 is not None  # never NaN
    return TagsComparison(
        tickets=len(truth),
        micro_f1=f1,
        precision=difference("precision"),
        added=(int(mine.added.sum()), int(theirs.added.sum())),
        addable=(len(addable(candidate[0])), len(addable(current[0]))),
        level=level,
    )
