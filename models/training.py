"""Training a triage model from labelled tickets.

The table has ``subject`` and ``description`` (or ``body``) and one label column per field, and
optionally ``ticket_id`` and ``updated_at`` (the resolution time). Rows are put in a canonical order
(by text hash), so the same data in any order trains the same model. The hold-out is temporal when
the table has times (the newest resolved tickets), stratified otherwise. The training rows are
recorded as a fingerprint (their sorted ids hashed) with their cutoff, the newest ``updated_at``
among them, so that promotion can tell which tickets a model never saw. Per field, classes with fewer than ``min_examples_per_class``
training rows are left out of the head and reported with their counts (their rows do not train that
head, and they still count as errors on the hold-out). Rows with no label for a field simply do
not train that field.

By default the encoder is frozen: every text is embedded once (optionally through an on-disk
cache). Each field's head is linear over three blocks: the standardised embedding, hashed word +
char n-gram TF-IDF (``hybrid`` head; the ``linear`` head leaves it out) and the label shares of the
most similar training tickets (the neighbour memory, leave-one-out for training rows; off with
``neighbours=0``). It is fitted in torch with L-BFGS on class-weighted cross-entropy from zero
weights: a convex problem, so the same data and seed give the same model. Per field, the blocks and
the embedding's L2 strength are chosen by cross-validation on the training rows, starting from the
baseline's own model (TF-IDF only) and adding the embedding and memory only when they help.
``fine_tune=True`` first adapts the encoder itself to the fields (meant for a GPU), then fits the heads the same way.
Every trained model is evaluated on the hold-out beside the TF-IDF + logistic-regression baseline
trained on the same rows.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sklearn.model_selection import train_test_split

from triage.models.classifier import TriageClassifier, pick_device
from triage.models.embedding_cache import EmbeddingCache, encoder_fingerprint
from triage.models.encoders import EncoderSpec, resolve_encoder
from triage.models.evaluation import FieldEvaluation, apply_gap, evaluate_field
from triage.models.features import HashingConfig
from triage.models.fine_tune import fine_tune_encoder
from triage.models.head_fitting import HeadChoice, one_thread, refit_head, select_head, selection_fits
from triage.models.manifest import (
    ClassifierConfig,
    FieldManifest,
    ModelManifest,
    ThresholdPoint,
    TicketKey,
    TrainingInfo,
    TrainingSet,
    keys_sha256,
)
from triage.models.progress import Phase, Progress, phase
from triage.models.text import text_hash, ticket_text
from triage.settings import ModelSettings

if TYPE_CHECKING:
    from triage.models.report import EvaluationReport
    from triage.settings import Settings

_DEFAULTS = ModelSettings()

log = logging.getLogger(__name__)

TEXT = "text"
HASH: Final = "text_hash"
ID: Final = "ticket_id"
"""Optional column: the ticket's id (fingerprints the training set; text hashes where absent)."""
TIME = "updated_at"
"""Optional column: when the ticket was resolved (last updated); makes the hold-out temporal."""
MIN_SLICE_ROWS = 20
EMBEDDING_CACHE_DIR = "embedding-cache"
"""Under the model store: where :meth:`TrainConfig.from_settings` keeps frozen embeddings."""


class TrainingError(ValueError):
    """The data cannot train a model (missing columns, no field with two usable classes ...)."""


class TrainConfig(BaseModel):
    """Everything that decides a trained model; defaults follow :class:`triage.settings.ModelSettings`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: list[str] = Field(default_factory=lambda: ["group", "priority", "type"], min_length=1)
    label_columns: dict[str, str] = Field(
        default_factory=dict, description="Field -> label column, where they differ (group=queue)."
    )
    text_columns: list[str] = Field(
        default_factory=lambda: ["subject", "description"],
        min_length=1,
        description="Columns joined into the text; 'description' falls back to 'body'.",
    )
    base_encoder: str = _DEFAULTS.base_encoder
    store_root: Path = Field(default=_DEFAULTS.store, description="Where named encoders are built.")
    name: str | None = Field(default=None, description="Model name; default '<encoder>+<head>'.")
    max_length: int = Field(default=_DEFAULTS.max_length, ge=16, le=8192)
    min_examples_per_class: int = Field(default=_DEFAULTS.min_examples_per_class, ge=1)
    test_size: float = Field(default=0.2, gt=0.0, lt=1.0)
    seed: int = _DEFAULTS.seed
    target_precision: float = Field(default=_DEFAULTS.target_precision, gt=0.0, le=1.0)
    suggest_precision: float = Field(default=_DEFAULTS.suggest_precision, gt=0.0, le=1.0)
    head: Literal["hybrid", "linear"] = "hybrid"
    hashing: HashingConfig = Field(default_factory=HashingConfig)
    c_dense: float | None = Field(
        default=None,
        gt=0.0,
        description="Inverse L2 strength of the embedding weights; None: the head's blocks and this "
        "strength are chosen per field by cross-validation (triage.models.head_fitting).",
    )
    c_sparse: float | None = Field(
        default=None,
        gt=0.0,
        description="Inverse L2 strength of the TF-IDF weights; None: the baseline's 10.",
    )
    c_memory: float = Field(default=100.0, gt=0.0, description="Inverse L2 strength of the memory weights.")
    neighbours: int = Field(default=10, ge=0, description="Neighbours the memory consults; 0: no memory.")
    neighbour_temperature: float = Field(default=0.02, gt=0.0, description="Softness of neighbour weights.")
    memory_size: int = Field(default=50_000, ge=1, description="Most training tickets the memory keeps.")
    class_weight: Literal["balanced", "none"] = "balanced"
    max_iter: int = Field(default=1000, ge=1, description="Most L-BFGS iterations per head fit.")
    fine_tune: bool = False
    epochs: int = Field(default=2, ge=1, description="Fine-tuning epochs.")
    learning_rate: float = Field(
        default=3e-5, gt=0.0, description="Fine-tuning learning rate of the encoder."
    )
    batch_size: int = Field(default=16, ge=1, description="Fine-tuning batch size.")
    batch_tokens: int = Field(
        default=_DEFAULTS.batch_tokens, ge=256, description="Token budget of embedding batches."
    )
    device: str = "auto"
    embedding_cache: Path | None = Field(
        default=None, description="Folder caching frozen embeddings by text hash (speeds up retraining)."
    )

    @field_validator("fields")
    @classmethod
    def _unique_fields(cls, fields: list[str]) -> list[str]:
        if len(set(fields)) != len(fields):
            raise ValueError("fields must not repeat")
        return fields

    @model_validator(mode="after")
    def _suggest_below_apply(self) -> TrainConfig:
        if self.suggest_precision > self.target_precision:
            raise ValueError("suggest_precision must not exceed target_precision")
        unknown = set(self.label_columns) - set(self.fields)
        if unknown:
            raise ValueError(f"label_columns names fields that are not trained: {sorted(unknown)}")
        return self

    def label_column(self, field_name: str) -> str:
        return self.label_columns.get(field_name, field_name)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> TrainConfig:
        """The training configuration for a project's settings: the enabled fields, the ``model``
        section and its ``train_options``; ``overrides`` win."""
        model = settings.model
        values: dict[str, Any] = {
            "fields": settings.enabled_fields(),
            "base_encoder": model.base_encoder,
            "store_root": model.store,
            "max_length": model.max_length,
            "min_examples_per_class": model.min_examples_per_class,
            "seed": model.seed,
            "target_precision": model.target_precision,
            "suggest_precision": model.suggest_precision,
            "fine_tune": model.fine_tune,
            "batch_tokens": model.batch_tokens,
            "device": model.device,
            "embedding_cache": Path(model.store) / EMBEDDING_CACHE_DIR,
        }
        return cls(**{**values, **model.train_options, **overrides})


@dataclass
class FieldOutcome:
    """What training did for one field."""

    labels: list[str]
    excluded_classes: dict[str, int]
    n_train: int
    n_test: int
    choice: HeadChoice
    """The head's blocks and strengths, with the cross-validated scores they were chosen on."""
    evaluation: FieldEvaluation
    baseline: FieldEvaluation

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
    training_set: TrainingSet
    train_keys: frozenset[str]
    """The training rows' keys (``training_set.key``): promotion scores no ticket among them."""
    slice_column: str | None = None
    slices: dict[str, dict[str, tuple[FieldEvaluation, FieldEvaluation]]] = field(default_factory=dict)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage: preparation (incl. loading the encoder), embedding (or fine-tuning and
    embedding), heads (features, memory, cross-validated head fits) and evaluation (incl. the baseline)."""
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
        from triage.models.report import EvaluationReport

        return EvaluationReport(
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
            fields={
                name: {
                    "model": outcome.evaluation,
                    "baseline": outcome.baseline,
                    "excluded_classes": outcome.excluded_classes,
                    "head": outcome.choice.summary(),
                }
                for name, outcome in self.fields.items()
            },
            slices={
                key: {name: {"model": m, "baseline": b} for name, (m, b) in per_field.items()}
                for key, per_field in self.slices.items()
            },
            created_at=datetime.now(UTC),
            command=self.command,
            notes=[f"WARNING {warning}" for o in self.fields.values() if (warning := o.apply_warning)],
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


# -- the table ---------------------------------------------------------------------------------------


def prepare_frame(
    frame: pd.DataFrame, config: TrainConfig, *, slice_column: str | None = None
) -> pd.DataFrame:
    """``text``, ``text_hash``, one label column per field (None where missing) and the slice column;
    ``ticket_id`` (as text) and ``updated_at`` (UTC) where ``frame`` has them.

    Rows come back in canonical order (by text hash, then labels). Raises :class:`TrainingError`
    naming any missing column, or times that are not times.
    """
    columns = [_text_column(frame, name) for name in config.text_columns]
    missing = [config.label_column(f) for f in config.fields if config.label_column(f) not in frame.columns]
    if slice_column is not None and slice_column not in frame.columns:
        missing.append(slice_column)
    if missing:
        raise TrainingError(f"missing column(s) {missing}; the table has {list(frame.columns)}")
    if len(columns) == 1:
        texts = [ticket_text(None, value) for value in frame[columns[0]]]
    else:
        subject, *rest = columns
        body = frame[rest].apply(lambda row: "\n\n".join(_present(v) for v in row if _present(v)), axis=1)
        texts = [ticket_text(s, b) for s, b in zip(frame[subject], body, strict=True)]
    out = pd.DataFrame({TEXT: texts})
    out[HASH] = [text_hash(t) for t in texts]
    for name in config.fields:  # object columns: a missing label stays None, never becomes NaN
        out[name] = pd.Series([_label(v) for v in frame[config.label_column(name)]], dtype=object)
    if slice_column is not None:
        out[slice_column] = pd.Series([_label(v) for v in frame[slice_column]], dtype=object)
    if ID in frame.columns:
        out[ID] = pd.Series([_label(v) for v in frame[ID]], dtype=object)
    if TIME in frame.columns:
        try:
            out[TIME] = pd.to_datetime(frame[TIME].to_numpy(), utc=True, format="mixed")
        except (ValueError, TypeError) as exc:
            raise TrainingError(f"column {TIME!r} holds values that are not times: {exc}") from None
    out = out[out[TEXT] != ""]
    keys = [HASH, *config.fields]
    return out.sort_values(keys, kind="stable", na_position="first").reset_index(drop=True)


def _text_column(frame: pd.DataFrame, name: str) -> str:
    if name in frame.columns:
        return name
    if name == "description" and "body" in frame.columns:
        return "body"
    raise TrainingError(f"missing text column {name!r}; the table has {list(frame.columns)}")


def _present(value: object) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _label(value: object) -> str | None:
    text = _present(value).strip()
    return text or None


def data_hash(prepared: pd.DataFrame, fields: list[str]) -> str:
    """SHA-256 over the texts and labels, independent of row order."""
    digest = hashlib.sha256("|".join(fields).encode())
    for row in prepared[[HASH, *fields]].itertuples(index=False):
        digest.update(("\t".join("" if v is None else str(v) for v in row) + "\n").encode())
    return digest.hexdigest()


def split_holdout(prepared: pd.DataFrame, config: TrainConfig) -> tuple[np.ndarray, np.ndarray, str]:
    """Train and test row positions: the newest ``test_size`` by ``updated_at`` where rows have
    times, else stratified on the first field (rare classes pooled)."""
    if TIME in prepared.columns and prepared[TIME].notna().any():
        # as integers a missing time (NaT) is the smallest, the oldest; equal times keep canonical order
        order = np.argsort(prepared[TIME].array.asi8, kind="stable")
        n_test = math.ceil(config.test_size * len(prepared))
        return (
            np.sort(order[: len(order) - n_test]),
            np.sort(order[len(order) - n_test :]),
            f"temporal: the newest {n_test} by {TIME}, test_size={config.test_size}",
        )
    first = config.fields[0]
    strata = prepared[first].fillna("\x00missing")
    counts = strata.value_counts()
    strata = strata.where(strata.map(counts) >= 2, "\x00rare")
    rows = np.arange(len(prepared))
    try:
        train, test = train_test_split(
            rows, test_size=config.test_size, random_state=config.seed, stratify=strata
        )
        how = f"stratified on {first}"
    except ValueError as exc:
        train, test = train_test_split(rows, test_size=config.test_size, random_state=config.seed)
        how = f"random (stratifying on {first} was impossible: {exc})"
    return np.sort(train), np.sort(test), f"{how}, test_size={config.test_size}, seed={config.seed}"


# -- training ----------------------------------------------------------------------------------------


def train(
    frame: pd.DataFrame,
    config: TrainConfig,
    *,
    slice_column: str | None = None,
    test_frame: pd.DataFrame | None = None,
    progress: Progress | None = None,
) -> TrainingResult:
    """Train and evaluate a model on ``frame`` (or on ``frame`` with ``test_frame`` as the hold-out).

    ``slice_column`` (e.g. ``language``) adds per-value evaluations of model and baseline.
    ``progress`` (:class:`triage.models.progress.Progress`) hears every phase in order with its steps:
    ``preparation``, ``fine-tuning`` (only with ``fine_tune``), ``embedding`` (token-budget
    batches), ``features`` (TF-IDF, memory), ``head selection`` (candidates x folds of every
    field), ``final fit`` and ``evaluation`` (the hold-out's features, then each field).
    """
    started = time.perf_counter()
    _seed_everything(config.seed)
    with phase(progress, "preparation"):
        data, train_rows, test_rows, split = _split_data(frame, config, slice_column, test_frame)
        fingerprint, train_keys = training_set(data, train_rows)
        plan, skipped = _plan_fields(data.iloc[train_rows], config)
        if not plan:
            reasons = "; ".join(f"{k}: {v}" for k, v in skipped.items())
            raise TrainingError(f"no field can be trained: {reasons}")
        for name, reason in skipped.items():
            log.warning("field %s not trained: %s", name, reason)

        encoder = resolve_encoder(config.base_encoder, config.store_root)
        classifier = _new_classifier(encoder, plan, config)
        train_texts = data[TEXT].iloc[train_rows].tolist()
        labels = {  # per field, each training row's label index (-1: no label, or a class left out)
            name: _label_index(data[name].iloc[train_rows].to_numpy(), names)
            for name, (names, _) in plan.items()
        }
    timings = {"preparation": time.perf_counter() - started}
    clock = time.perf_counter()
    if config.fine_tune:
        with phase(progress, "fine-tuning"):
            fine_tune_encoder(classifier, train_texts, labels, config)
        with phase(progress, "embedding", 0) as step:
            embeddings = classifier.embed(
                data[TEXT].tolist(), batch_tokens=config.batch_tokens, on_batch=step.at
            )
    else:
        with phase(progress, "embedding", 0) as step:
            embeddings = _embed(classifier, encoder, data, config, step)
    timings["embedding"], clock = time.perf_counter() - clock, time.perf_counter()
    chosen = _fit_heads(classifier, train_texts, embeddings[train_rows], labels, config, progress)
    timings["heads"], clock = time.perf_counter() - clock, time.perf_counter()
    with phase(progress, "evaluation", 1 + len(plan)) as step:
        with one_thread():
            test_texts = data[TEXT].iloc[test_rows].tolist()
            proba = classifier.proba_from_features(
                embeddings[test_rows], classifier.sparse_features(test_texts)
            )
        step.step()
        holdout = data.iloc[test_rows].reset_index(drop=True)
        outcomes, slices = _evaluate(
            data, train_rows, holdout, proba, plan, chosen, config, slice_column, step
        )
    timings["evaluation"] = time.perf_counter() - clock
    return TrainingResult(
        model=classifier,
        config=config,
        encoder=encoder,
        data_hash=data_hash(data, config.fields),
        n_rows=len(data),
        n_train=len(train_rows),
        holdout=holdout,
        split=split,
        fields=outcomes,
        skipped_fields=skipped,
        training_set=fingerprint,
        train_keys=train_keys,
        slice_column=slice_column,
        slices=slices,
        seconds=time.perf_counter() - started,
        timings=timings,
    )


def ticket_key(data: pd.DataFrame) -> TicketKey:
    """The column identifying ``data``'s tickets: ``ticket_id`` where every row has one, else the text hash."""
    return ID if ID in data.columns and data[ID].notna().all() else HASH


def training_set(data: pd.DataFrame, train_rows: np.ndarray) -> tuple[TrainingSet, frozenset[str]]:
    """The fingerprint and cutoff of ``data``'s training rows, and their keys."""
    key = ticket_key(data)
    part = data.iloc[train_rows]
    keys = frozenset(part[key])
    times = part[TIME].dropna() if TIME in part.columns else pd.Series(dtype=object)
    cutoff = times.max().to_pydatetime() if len(times) else None
    return TrainingSet(key=key, count=len(keys), sha256=keys_sha256(keys), cutoff=cutoff), keys


def _split_data(
    frame: pd.DataFrame,
    config: TrainConfig,
    slice_column: str | None,
    test_frame: pd.DataFrame | None,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, str]:
    """The prepared rows (training, then a given test set) with train and test positions."""
    data = prepare_frame(frame, config, slice_column=slice_column)
    if test_frame is None:
        train_rows, test_rows, split = split_holdout(data, config)
    else:
        test = prepare_frame(test_frame, config, slice_column=slice_column)
        train_rows = np.arange(len(data))
        test_rows = np.arange(len(data), len(data) + len(test))
        data = pd.concat([data, test], ignore_index=True)
        split = "given test set"
    if len(train_rows) == 0 or len(test_rows) == 0:
        raise TrainingError("both the training and the hold-out part need rows")
    return data, train_rows, test_rows, split


def _new_classifier(
    encoder: EncoderSpec, plan: dict[str, tuple[list[str], dict[str, int]]], config: TrainConfig
) -> TriageClassifier:
    memory = (
        {"k": config.neighbours, "temperature": config.neighbour_temperature} if config.neighbours else None
    )
    settings = ClassifierConfig(
        base_encoder=config.base_encoder,
        encoder_name=encoder.name,
        query_prefix=encoder.query_prefix,
        pooling=encoder.pooling,
        max_length=config.max_length,
        head=config.head,
        hashing=config.hashing.to_dict() if config.head == "hybrid" else None,
        memory=memory,
        labels={name: labels for name, (labels, _) in plan.items()},
        fine_tuned=config.fine_tune,
    )
    return TriageClassifier.create(encoder.path, settings, device=pick_device(config.device))


def _fit_heads(
    classifier: TriageClassifier,
    texts: list[str],
    embeddings: np.ndarray,
    labels: dict[str, np.ndarray],
    config: TrainConfig,
    progress: Progress | None = None,
) -> dict[str, HeadChoice]:
    """Fit features, memory and every head on the training rows; returns each head's choice.

    Phases: ``features`` (TF-IDF and memory), ``head selection`` (every field's cross-validated
    candidates) and ``final fit`` (each field's chosen head on all its rows)."""
    with phase(progress, "features", 2) as step:
        memory_rows = _memory_rows(len(texts), config)
        classifier.fit_features(texts, embeddings, labels, memory_rows)
        sparse = classifier.sparse_features(texts)
        step.step()
        self_index = np.full(len(texts), -1)
        self_index[memory_rows] = np.arange(len(memory_rows))
        neighbours = classifier.neighbour_features(embeddings, self_index=self_index)

    rows = {name: np.flatnonzero(y >= 0) for name, y in labels.items()}  # the rows each head learns from

    def inputs(name: str) -> tuple[torch.Tensor, Any, torch.Tensor | None, np.ndarray]:
        mine = rows[name]
        return (
            classifier.standardise(torch.from_numpy(embeddings[mine]).to(classifier.device)),
            sparse[mine] if sparse is not None else None,
            neighbours[name][mine] if neighbours else None,
            labels[name][mine],
        )

    def select(name: str, step: Phase) -> HeadChoice:
        return select_head(classifier.head(name), *inputs(name), config, workers=workers, on_fit=step.step)

    def refit(name: str, choice: HeadChoice, step: Phase) -> None:
        refit_head(classifier.head(name), *inputs(name), config, choice)
        log.info("field %s (%d rows): %s", name, len(rows[name]), choice.summary())
        step.step()

    # Heads and candidates are independent: fit them side by side, one torch thread each.
    threads = torch.get_num_threads()
    workers = max(1, threads // len(labels))
    fits = sum(
        selection_fits(labels[name][rows[name]], config, sparse=sparse is not None, memory=bool(neighbours))
        for name in labels
    )
    with one_thread(), ThreadPoolExecutor(max(1, min(threads, len(labels)))) as pool:
        with phase(progress, "head selection", fits) as step:
            futures = {name: pool.submit(select, name, step) for name in labels}
            chosen = {name: future.result() for name, future in futures.items()}
        with phase(progress, "final fit", len(labels)) as step:
            done = [pool.submit(refit, name, chosen[name], step) for name in labels]
            for future in done:
                future.result()
    return chosen


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def _plan_fields(
    train_part: pd.DataFrame, config: TrainConfig
) -> tuple[dict[str, tuple[list[str], dict[str, int]]], dict[str, str]]:
    """Per field: (head labels, excluded classes with counts); and the fields that cannot be trained."""
    plan: dict[str, tuple[list[str], dict[str, int]]] = {}
    skipped: dict[str, str] = {}
    for name in config.fields:
        counts = Counter(v for v in train_part[name] if v is not None)
        kept = sorted(label for label, n in counts.items() if n >= config.min_examples_per_class)
        excluded = {
            label: n
            for label, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            if n < config.min_examples_per_class
        }
        if len(kept) < 2:
            skipped[name] = (
                f"{len(kept)} class(es) with at least {config.min_examples_per_class} training examples "
                f"(counts: {dict(counts.most_common())})"
            )
            continue
        plan[name] = (kept, excluded)
    return plan, skipped


def _label_index(values: np.ndarray, labels: list[str]) -> np.ndarray:
    """Each value's position in ``labels``, or -1 (missing, or a class left out of the head)."""
    position = {label: i for i, label in enumerate(labels)}
    return np.array([position.get(v, -1) for v in values], dtype=np.int64)


def _memory_rows(n_train: int, config: TrainConfig) -> np.ndarray:
    """Training positions the neighbour memory keeps: all, or a seeded sample of ``memory_size``."""
    if n_train <= config.memory_size:
        return np.arange(n_train)
    rng = np.random.default_rng(config.seed)
    return np.sort(rng.choice(n_train, size=config.memory_size, replace=False))


def _embed(
    classifier: TriageClassifier,
    encoder: EncoderSpec,
    data: pd.DataFrame,
    config: TrainConfig,
    step: Phase | None = None,
) -> np.ndarray:
    """Frozen embeddings of every row, each distinct text encoded once (through the cache if set);
    ``step`` counts the batches."""
    unique = data.drop_duplicates(HASH)
    hashes, texts = unique[HASH].tolist(), unique[TEXT].tolist()
    cache = None
    if config.embedding_cache is not None:
        fingerprint = encoder_fingerprint(
            encoder.path,
            query_prefix=encoder.query_prefix,
            max_length=config.max_length,
            pooling=encoder.pooling,
        )
        cache = EmbeddingCache(config.embedding_cache, fingerprint)
        found, missing = cache.lookup(hashes)
    else:
        found, missing = None, list(range(len(hashes)))
    if found is None:
        found = np.zeros((len(hashes), classifier.embed_mean.shape[0]), dtype=np.float32)
    if missing:
        log.info("embedding %d texts with %s", len(missing), encoder.name)
        fresh = classifier.embed(
            [texts[i] for i in missing],
            batch_tokens=config.batch_tokens,
            on_batch=step.at if step is not None else None,
        )
        found[missing] = fresh
        if cache is not None:
            cache.add([hashes[i] for i in missing], fresh)
    position = {h: i for i, h in enumerate(hashes)}
    return found[[position[h] for h in data[HASH]]]


# -- evaluation --------------------------------------------------------------------------------------


def _evaluate(
    data: pd.DataFrame,
    train_rows: np.ndarray,
    holdout: pd.DataFrame,
    proba: dict[str, np.ndarray],
    plan: dict[str, tuple[list[str], dict[str, int]]],
    chosen: dict[str, HeadChoice],
    config: TrainConfig,
    slice_column: str | None,
    step: Phase | None = None,
) -> tuple[dict[str, FieldOutcome], dict[str, dict[str, tuple[FieldEvaluation, FieldEvaluation]]]]:
    """Model and baseline (trained on the same rows) on the hold-out, per field and per slice
    (``step``: one per field)."""
    from triage.models.baseline import TfidfBaseline

    outcomes: dict[str, FieldOutcome] = {}
    slices: dict[str, dict[str, tuple[FieldEvaluation, FieldEvaluation]]] = {}
    score = functools.partial(
        evaluate_field, target_precision=config.target_precision, suggest_precision=config.suggest_precision
    )
    for name, (labels, excluded) in plan.items():
        train_part = data.iloc[train_rows]
        fit_part = train_part[train_part[name].isin(labels)]
        baseline = TfidfBaseline(seed=config.seed).fit(fit_part[TEXT].tolist(), fit_part[name].tolist())
        labelled = holdout[name].notna().to_numpy()
        if not labelled.any():
            raise TrainingError(f"the hold-out has no labelled rows for field {name!r}")
        model_proba = proba[name][labelled]
        base_proba = baseline.predict_proba(holdout[TEXT][labelled].tolist())
        truth = holdout[name][labelled].tolist()
        outcomes[name] = FieldOutcome(
            labels=labels,
            excluded_classes=excluded,
            n_train=len(fit_part),
            n_test=int(labelled.sum()),
            choice=chosen[name],
            evaluation=score(name, truth, model_proba, labels),
            baseline=score(name, truth, base_proba, list(baseline.classes_)),
        )
        if slice_column is None:
            if step is not None:
                step.step()
            continue
        values = holdout[slice_column][labelled].to_numpy()
        for value in sorted({v for v in values if v is not None}):
            inside = values == value
            if inside.sum() < MIN_SLICE_ROWS:
                continue
            part = [t for t, keep in zip(truth, inside, strict=True) if keep]
            slices.setdefault(f"{slice_column}={value}", {})[name] = (
                score(name, part, model_proba[inside], labels),
                score(name, part, base_proba[inside], list(baseline.classes_)),
            )
        if step is not None:
            step.step()
    return outcomes, slices
