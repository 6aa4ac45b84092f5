"""What training produced (:class:`TrainingResult`) and what is built from it: the version's
``model.json`` (:meth:`TrainingResult.manifest`) and its evaluation report (:meth:`TrainingResult.report`,
assembled by :func:`triage.models.report.build_report` as a stored version's evaluation is)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from triage.models.classifier import TriageClassifier
from triage.models.encoders import EncoderSpec
from triage.models.evaluation import FieldComparison, FieldEvaluation, apply_gap
from triage.models.head_fitting import HeadChoice
from triage.models.manifest import (
    FieldManifest,
    ModelManifest,
    ThresholdPoint,
    TrainingInfo,
    TrainingSet,
)
from triage.models.report import EvaluationReport, build_report
from triage.models.tags import TagsOutcome
from triage.models.training_config import TrainConfig


@dataclass
class FieldOutcome:
    """What training did for one field."""

    labels: list[str]
    excluded_classes: dict[str, int]
    """Classes with a single training row: not in the head (their hold-out rows count as errors)."""
    suggest_only: dict[str, str]
    """Head classes suggested but never applied, with the reason (too few training rows, or too
    little hold-out evidence at the apply threshold: :func:`triage.models.training.suggest_only`)."""
    n_train: int
    n_test: int
    choice: HeadChoice
    """The head's blocks and strengths, with the cross-validated scores they were chosen on."""
    evaluation: FieldEvaluation
    baseline: FieldEvaluation
    slices: dict[str, tuple[FieldEvaluation, FieldEvaluation]] = field(default_factory=dict)
    """``"<column>=<value>"`` -> (model, baseline) on that slice of the hold-out."""

    @property
    def comparison(self) -> FieldComparison:
        """The head beside the baseline on the hold-out, overall and per slice."""
        return FieldComparison(self.evaluation, self.baseline, self.slices)

    @property
    def apply_warning(self) -> str | None:
        """Set when the head reaches no apply threshold on the hold-out but the baseline does."""
        return apply_gap(self.evaluation, self.baseline, "baseline")


@dataclass
class TrainingResult:
    """A trained model with its hold-out, evaluation and provenance; hand it to ``ModelStore.register``."""

    model: TriageClassifier
    config: TrainConfig
    encoder: EncoderSpec
    data_hash: str
    n_rows: int
    n_train: int
    holdout: pd.DataFrame
    """The hold-out rows: ``text``, ``text_hash``, one column per field (None where unlabelled), slice,
    and ``ticket_id`` / ``updated_at`` where the table has them."""
    split: str
    fields: dict[str, FieldOutcome]
    skipped_fields: dict[str, str]
    """Fields (and ``tags``, where asked for) not trained, with why."""
    training_set: TrainingSet
    train_keys: frozenset[str]
    """The training rows' keys (``training_set.key``): promotion scores no ticket among them."""
    slice_column: str | None = None
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage: preparation (incl. loading the encoder), embedding (or fine-tuning and
    embedding), heads (features, memory, cross-validated head fits) and evaluation (incl. the baseline)."""
    tags: TagsOutcome | None = None
    """The multi-label tags head's outcome, where it was trained (:mod:`triage.models.tags`)."""
    dataset_name: str | None = None
    """Shown in the evaluation report (e.g. the training file's name)."""
    command: str | None = None
    """The command line that produced this result, recorded in the report."""

    @property
    def name(self) -> str:
        return self.config.name or f"{self.encoder.name.split('/')[-1]}+{self.config.head}"

    def manifest(self, version: str, created_at: datetime) -> ModelManifest:
        """The ``model.json`` content for this result stored as ``version``."""
        fields = {}
        for name, outcome in self.fields.items():
            model, baseline = outcome.evaluation, outcome.baseline
            fields[name] = FieldManifest(
                labels=outcome.labels,
                apply=_threshold_point(model, "apply"),
                suggest=_threshold_point(model, "suggest"),
                excluded_classes=outcome.excluded_classes,
                suggest_only=outcome.suggest_only,
                n_train=outcome.n_train,
                n_test=outcome.n_test,
                metrics={
                    "accuracy": model.accuracy,
                    "macro_f1": model.macro_f1,
                    "weighted_f1": model.weighted_f1,
                    "ece": model.ece,
                    "baseline_accuracy": baseline.accuracy,
                    "baseline_macro_f1": baseline.macro_f1,
                    "baseline_weighted_f1": baseline.weighted_f1,
                    **_strengths(outcome.choice),
                },
            )
        cfg = self.config
        options = cfg.model_dump(
            mode="json",
            exclude={
                "fields", "seed", "min_examples_per_class", "target_precision", "suggest_precision",
                "store_root", "embedding_cache", "device",
            },
        )  # fmt: skip
        options["skipped_fields"] = self.skipped_fields
        return ModelManifest(
            name=self.name,
            version=version,
            created_at=created_at,
            classifier=self.model.config,
            fields=fields,
            tags=self.tags.manifest() if self.tags is not None else None,
            training=TrainingInfo(
                data_hash=self.data_hash,
                seed=cfg.seed,
                n_rows=self.n_rows,
                n_train=self.n_train,
                n_test=len(self.holdout),
                split=self.split,
                min_examples_per_class=cfg.min_examples_per_class,
                target_precision=cfg.target_precision,
                suggest_precision=cfg.suggest_precision,
                options=options,
                seconds=round(self.seconds, 1),
                training_set=self.training_set,
            ),
        )

    def report(self, version: str | None = None) -> EvaluationReport:
        """The evaluation report (model beside baseline per field and slice) for models-eval's writer."""
        return build_report(
            dataset={
                "name": self.dataset_name or "training data",
                "n_train": self.n_train,
                "n_test": len(self.holdout),
                "data_hash": self.data_hash,
                "split": self.split,
            },
            model={
                "name": self.name,
                "version": version,
                "base_encoder": self.encoder.name,
                "head": self.config.head + (" + fine-tuned encoder" if self.config.fine_tune else ""),
            },
            comparisons={name: outcome.comparison for name, outcome in self.fields.items()},
            details={
                name: {
                    "excluded_classes": outcome.excluded_classes,
                    "suggest_only": outcome.suggest_only,
                    "head": outcome.choice.summary(),
                }
                for name, outcome in self.fields.items()
            },
            command=self.command,
            tags=self.tags.report() if self.tags is not None else None,
        )


def _strengths(choice: HeadChoice) -> dict[str, float | None]:
    """The head's inverse L2 strengths (None: block off) and each candidate's cross-validated score."""
    out: dict[str, float | None] = {
        f"c_{block}": strength or None
        for block, strength in zip(("dense", "sparse", "memory"), choice.strengths, strict=True)
    }
    for (dense, sparse, memory), score in choice.scores.items():
        out[f"cv_macro_f1[c_dense={dense:g},c_sparse={sparse:g},c_memory={memory:g}]"] = score
    return out


def _threshold_point(evaluation: FieldEvaluation, kind: str) -> ThresholdPoint:
    point = getattr(evaluation, kind)
    target = getattr(evaluation, f"{kind}_target")
    if point is None:
        return ThresholdPoint(target=target, threshold=None)
    return ThresholdPoint(
        target=target, threshold=point.threshold, coverage=point.coverage, precision=point.precision
    )
