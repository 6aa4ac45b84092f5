"""Training a triage model from labelled tickets.

The table has ``subject`` and ``description`` (or ``body``) and one label column per field, and
optionally ``ticket_id`` and ``updated_at`` (the resolution time). Rows are put in a canonical order
(by text hash), so the same data in any order trains the same model. The hold-out is temporal when
the table has times (the newest resolved tickets), stratified otherwise. The training rows are
recorded as a fingerprint (their sorted ids hashed) with their cutoff, the newest ``updated_at``
among them, so that promotion can tell which tickets a model never saw. Per field, every class with
at least :data:`MIN_CLASS_ROWS` training rows is learned and predicted; a class with a single
training row is left out of the head and reported with its count (its rows still count as errors on
the hold-out). Whether a class may be *written* is decided per class on evidence
(:attr:`FieldOutcome.suggest_only <triage.models.training_result.FieldOutcome.suggest_only>`): a class
with fewer than ``min_examples_per_class`` training rows, or whose own hold-out predictions at the
field's apply threshold are too few (:data:`MIN_CLASS_EVIDENCE`) or do not reach the target
precision, is suggested but never applied. Rows with no label for a field simply do not train that
field.

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

This module prepares the table and fits; the rest lives beside it: the configuration in
:mod:`triage.models.training_config`, the heads' fitting in :mod:`triage.models.head_fitting`, the
evaluation beside the baseline in :func:`triage.models.evaluation.evaluate_beside_baseline` (shared
with :mod:`triage.models.evaluate_version`), and the result with the ``model.json`` and report built
from it in :mod:`triage.models.training_result`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.model_selection import train_test_split

from triage.errors import TriageError
from triage.models.baseline import RowsBaseline, tfidf_features
from triage.models.classifier import TriageClassifier, pick_device
from triage.models.embedding_cache import EmbeddingCache, encoder_fingerprint
from triage.models.encoders import EncoderSpec, resolve_encoder
from triage.models.evaluation import FieldEvaluation, evaluate_beside_baseline
from triage.models.features import HashingConfig
from triage.models.fine_tune import fine_tune_encoder
from triage.models.head_fitting import (
    HeadChoice,
    HeadEstimator,
    HeadInputs,
    one_thread,
    select_head,
    selection_fits,
)
from triage.models.heads import HeadFeatures, SparseRows
from triage.models.manifest import ClassifierConfig, TicketKey, TrainingSet, keys_sha256
from triage.models.progress import Phase, Progress, phase
from triage.models.tags import (
    MIN_TAG_ROWS,
    TAGS,
    TagsBaseline,
    TagsOutcome,
    evaluate_tags,
    fit_tags,
    has_tags,
    multi_hot,
    plan_tags,
    read_tags,
)
from triage.models.text import text_hash, ticket_text
from triage.models.training_config import TrainConfig
from triage.models.training_result import FieldOutcome, TrainingResult

log = logging.getLogger(__name__)

TEXT = "text"
HASH: Final = "text_hash"
ID: Final = "ticket_id"
"""Optional column: the ticket's id (fingerprints the training set; text hashes where absent)."""
TIME = "updated_at"
"""Optional column: when the ticket was resolved (last updated); makes the hold-out temporal."""


_TAG_KEY = "\x00tags"
MIN_CLASS_ROWS = 2
"""Fewest training rows a class needs to be in its field's head (rarer: reported as left out)."""
MIN_CLASS_EVIDENCE = 10
"""Fewest hold-out predictions of a class at its field's apply threshold for it to be applied."""
SPARSE_WEIGHT_BUDGET = 2**23
"""Most TF-IDF weights a field's head (and the baseline) keeps: kept buckets x classes. Where the
data's n-grams x the largest field's classes exceed it, only the most frequent n-grams are kept
(HashingConfig.max_features, TfidfBaseline.max_features), which bounds the memory (L-BFGS keeps
about 25 copies of the weights) and the time per fit; on the shared data sets it never binds."""
MIN_FEATURES = 2**16
"""... but never fewer n-grams than this."""


class TrainingError(TriageError, ValueError):
    """The data cannot train a model (missing columns, no field with two usable classes ...)."""


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
    if config.tags and has_tags(frame):
        out[TAGS] = pd.Series(read_tags(frame), dtype=object)
    if TIME in frame.columns:
        try:
            out[TIME] = pd.to_datetime(frame[TIME].to_numpy(), utc=True, format="mixed")
        except (ValueError, TypeError) as exc:
            raise TrainingError(f"column {TIME!r} holds values that are not times: {exc}") from None
    out = out[out[TEXT] != ""]
    keys = [HASH, *config.fields]
    if TAGS in out.columns:  # tuples do not sort beside None: order on their text
        out[_TAG_KEY] = out[TAGS].map("\x1f".join)
        keys.append(_TAG_KEY)
    out = out.sort_values(keys, kind="stable", na_position="first")
    return out.drop(columns=[_TAG_KEY], errors="ignore").reset_index(drop=True)


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
        tag_plan = _plan_tags(data, train_rows, config, skipped)

        encoder = resolve_encoder(config.base_encoder, config.store_root)
        classifier = _new_classifier(encoder, plan, config, tag_plan[0] if tag_plan else None)
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
    tag_targets = multi_hot(data[TAGS].iloc[train_rows].tolist(), tag_plan[0]) if tag_plan else None
    heads = _fit_heads(classifier, train_texts, embeddings[train_rows], labels, config, progress, tag_targets)
    timings["heads"], clock = time.perf_counter() - clock, time.perf_counter()
    with phase(progress, "evaluation", 1 + len(plan) + bool(tag_plan)) as step:
        with one_thread():
            test_texts = data[TEXT].iloc[test_rows].tolist()
            test_sparse = classifier.sparse_features(test_texts)
            features = classifier.head_features(embeddings[test_rows], test_sparse)
        step.step()
        holdout = data.iloc[test_rows].reset_index(drop=True)
        outcomes = _evaluate(
            data.iloc[train_rows], holdout, features, plan, heads, config, slice_column, step
        )
        tags = None
        if tag_plan:
            with one_thread():
                proba = classifier.tag_proba(embeddings[test_rows], test_sparse)
            tags = _evaluate_tags(data.iloc[train_rows], holdout, proba, tag_plan, config)
            step.step()
    timings["evaluation"] = time.perf_counter() - clock
    return TrainingResult(
        model=classifier,
        config=config,
        encoder=encoder,
        data_hash=data_hash(data, [*config.fields, *([TAGS] if TAGS in data.columns else [])]),
        n_rows=len(data),
        n_train=len(train_rows),
        holdout=holdout,
        split=split,
        fields=outcomes,
        tags=tags,
        skipped_fields=skipped,
        training_set=fingerprint,
        train_keys=train_keys,
        slice_column=slice_column,
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
    encoder: EncoderSpec,
    plan: dict[str, tuple[list[str], dict[str, int]]],
    config: TrainConfig,
    tags: list[str] | None = None,
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
        hashing=_capped_hashing(config, plan, len(tags or ())).to_dict() if config.head == "hybrid" else None,
        memory=memory,
        labels={name: labels for name, (labels, _) in plan.items()},
        tags=tags,
        fine_tuned=config.fine_tune,
    )
    return TriageClassifier.create(encoder.path, settings, device=pick_device(config.device))


def feature_limit(n_classes: int) -> int:
    """Most TF-IDF n-grams for a head of ``n_classes`` (:data:`SPARSE_WEIGHT_BUDGET`)."""
    return max(MIN_FEATURES, SPARSE_WEIGHT_BUDGET // max(n_classes, 1))


def _capped_hashing(
    config: TrainConfig, plan: dict[str, tuple[list[str], dict[str, int]]], n_tags: int = 0
) -> HashingConfig:
    """The configured hashing, its ``max_features`` (unless set) bounded for the largest head
    (a field's classes, or the tags)."""
    if config.hashing.max_features is not None:
        return config.hashing
    largest = max(n_tags, *(len(labels) for labels, _ in plan.values()))
    return dataclasses.replace(config.hashing, max_features=feature_limit(largest))


def _fit_heads(
    classifier: TriageClassifier,
    texts: list[str],
    embeddings: np.ndarray,
    labels: dict[str, np.ndarray],
    config: TrainConfig,
    progress: Progress | None = None,
    tag_targets: np.ndarray | None = None,
) -> dict[str, HeadEstimator]:
    """Fit features, memory and every head on the training rows; returns each field's fitted head.

    Phases: ``features`` (TF-IDF and memory), ``head selection`` (every field's cross-validated
    candidates) and ``final fit`` (each field's chosen head on all its rows, and the tags head on
    ``tag_targets``, rows x tags, where given)."""
    with phase(progress, "features", 2) as step:
        memory_rows = _memory_rows(len(texts), config)
        classifier.fit_features(texts, embeddings, labels, memory_rows)
        sparse = classifier.sparse_features(texts)
        step.step()
        self_index = np.full(len(texts), -1)
        self_index[memory_rows] = np.arange(len(memory_rows))
        neighbours = classifier.neighbour_features(embeddings, self_index=self_index)

    rows = {name: np.flatnonzero(y >= 0) for name, y in labels.items()}  # the rows each head learns from
    shared: list[SparseRows] = []  # the final fits' TF-IDF rows with their transpose, built once

    def features(name: str) -> HeadFeatures:
        mine = rows[name]
        every = len(mine) == len(texts)  # then the rows are shared, not copied per field
        return HeadFeatures(
            classifier.standardise(torch.from_numpy(embeddings[mine]).to(classifier.device)),
            (sparse if every else sparse[mine]) if sparse is not None else None,
            neighbours[name][mine] if neighbours else None,
            shared[0] if every and shared else None,
        )

    def select(name: str, step: Phase) -> HeadChoice:
        inputs = HeadInputs(features(name), labels[name][rows[name]], config)
        return select_head(classifier.head(name), inputs, workers=workers, on_fit=step.step)

    def refit(name: str, choice: HeadChoice, step: Phase) -> HeadEstimator:
        head = HeadEstimator(classifier.head(name), classifier.config.labels[name], config, choice)
        head.fit(features(name), labels[name][rows[name]])
        log.info("field %s (%d rows): %s", name, len(rows[name]), choice.summary())
        step.step()
        return head

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
        if sparse is not None and any(len(mine) == len(texts) for mine in rows.values()):
            shared.append(SparseRows.from_csr(sparse, classifier.device, for_training=True))
        with phase(progress, "final fit", len(labels) + (tag_targets is not None)) as step:
            done = {name: pool.submit(refit, name, chosen[name], step) for name in labels}
            if tag_targets is not None:
                assert classifier.tags_head is not None  # built from the tags planned with these targets
                every = HeadFeatures(
                    classifier.standardise(torch.from_numpy(embeddings).to(classifier.device)), sparse
                )
                fit_tags(classifier.tags_head, every, tag_targets, config)
                log.info("tags (%d rows, %d tags) fitted", len(tag_targets), tag_targets.shape[1])
                step.step()
            return {name: future.result() for name, future in done.items()}


def _evaluate(
    train_part: pd.DataFrame,
    holdout: pd.DataFrame,
    features: dict[str, HeadFeatures],
    plan: dict[str, tuple[list[str], dict[str, int]]],
    heads: dict[str, HeadEstimator],
    config: TrainConfig,
    slice_column: str | None,
    step: Phase | None = None,
) -> dict[str, FieldOutcome]:
    """Each field's head (on the hold-out's ``features``) beside the baseline trained on the same
    rows, on the hold-out, overall and per slice (``step``: one per field).

    The baseline is :class:`~triage.models.baseline.TfidfBaseline`'s recipe (its n-grams, at most
    :func:`feature_limit` of them for the field's classes, and its logistic regression): the texts
    are vectorised once for consecutive fields with the same rows and limit (only one vectorisation
    held at a time), and the regression solved by :class:`RowsBaseline` (one field at a time: two
    side by side raised the peak memory at 100 classes)."""
    outcomes: dict[str, FieldOutcome] = {}
    texts = holdout[TEXT].tolist()
    vectorised: dict[tuple[int, str], tuple[sp.csr_matrix, sp.csr_matrix]] = {}
    for name, (labels, excluded) in plan.items():
        learned = train_part[name].isin(labels).to_numpy()
        key = (feature_limit(len(labels)), "" if learned.all() else name)  # every row: shared
        if key not in vectorised:
            vectorised.clear()  # the previous fields' n-grams are freed first
            vectorizer = tfidf_features(key[0])
            rows = vectorizer.fit_transform(train_part[TEXT][learned].tolist())
            vectorised[key] = (
                sp.csr_matrix(rows, dtype=np.float32),
                sp.csr_matrix(vectorizer.transform(texts), dtype=np.float32),
            )
        fit_part = train_part[learned]
        baseline = RowsBaseline(seed=config.seed).fit(vectorised[key][0], fit_part[name].tolist())
        baseline_inputs = vectorised[key][1]
        labelled = holdout[name].notna().to_numpy()
        if not labelled.any():
            raise TrainingError(f"the hold-out has no labelled rows for field {name!r}")
        head = heads[name]
        assert head.choice is not None  # _fit_heads fitted it with its chosen strengths
        with one_thread():  # the heads' products as in inference's batches, one torch thread each
            comparison = evaluate_beside_baseline(
                name,
                holdout[name].tolist(),
                head,
                features[name],
                baseline,
                baseline_inputs,
                slice_column=slice_column,
                slice_values=holdout[slice_column].tolist() if slice_column is not None else None,
                target_precision=config.target_precision,
                suggest_precision=config.suggest_precision,
            )
        train_counts = Counter(fit_part[name])
        outcomes[name] = FieldOutcome(
            labels=labels,
            excluded_classes=excluded,
            suggest_only=suggest_only(comparison.model, train_counts, config.min_examples_per_class),
            n_train=len(fit_part),
            n_test=int(labelled.sum()),
            choice=head.choice,
            evaluation=comparison.model,
            baseline=comparison.baseline,
            slices=comparison.slices,
        )
        if step is not None:
            step.step()
    return outcomes


def suggest_only(
    evaluation: FieldEvaluation, train_counts: Mapping[str, int], min_rows: int
) -> dict[str, str]:
    """The head's classes that are suggested but never applied, each with the reason.

    A class is applied only where its own evidence allows it: at least ``min_rows`` training rows,
    at least :data:`MIN_CLASS_EVIDENCE` of its hold-out predictions at the field's apply threshold,
    and their precision reaching the target (:meth:`FieldEvaluation.class_evidence`; the field's
    threshold itself already needs the target at the lower end of a confidence interval over all
    classes). Where the field has no apply threshold (nothing is applied unless an operator sets
    one), only the training rows are checked.
    """
    evidence = evaluation.class_evidence(evaluation.apply.threshold) if evaluation.apply else None
    out: dict[str, str] = {}
    for label in evaluation.labels:
        rows = train_counts.get(label, 0)
        hits, selected, _ = (evidence or {}).get(label, (0, 0, 0.0))
        if rows < min_rows:
            out[label] = f"{rows} training rows (fewer than {min_rows})"
        elif evidence is None:
            continue
        elif selected < MIN_CLASS_EVIDENCE:
            out[label] = (
                f"{selected} hold-out predictions at the apply threshold (fewer than {MIN_CLASS_EVIDENCE})"
            )
        elif hits < evaluation.apply_target * selected - 1e-9:
            out[label] = (
                f"hold-out precision {hits}/{selected} at the apply threshold, below the target "
                f"{evaluation.apply_target:.2f}"
            )
    return out


def _plan_tags(
    data: pd.DataFrame, train_rows: np.ndarray, config: TrainConfig, skipped: dict[str, str]
) -> tuple[list[str], dict[str, int]] | None:
    """The tags to learn and those left out (too few rows), or None (off, none in the data; then
    ``skipped`` says why where tags were asked for)."""
    if not config.tags:
        return None
    if TAGS not in data.columns:
        skipped[TAGS] = "the data has no tags (a 'tags' column, or tag_1 .. tag_n columns)"
    else:
        kept, left_out = plan_tags(data[TAGS].iloc[train_rows])
        if kept:
            return kept, left_out
        skipped[TAGS] = f"no tag has {MIN_TAG_ROWS} training rows (counts: {left_out})"
    log.warning("tags not trained: %s", skipped[TAGS])
    return None


def _evaluate_tags(
    train_part: pd.DataFrame,
    holdout: pd.DataFrame,
    proba: np.ndarray,
    tag_plan: tuple[list[str], dict[str, int]],
    config: TrainConfig,
) -> TagsOutcome:
    """The tags head (``proba`` on the hold-out) beside the TF-IDF + one-vs-rest baseline trained on
    the same rows."""
    tags, left_out = tag_plan
    train_targets = multi_hot(train_part[TAGS].tolist(), tags)
    truth = multi_hot(holdout[TAGS].tolist(), tags)
    baseline = TagsBaseline(max_features=feature_limit(len(tags)))
    baseline.fit(train_part[TEXT].tolist(), train_targets)
    targets = {"target_precision": config.target_precision, "suggest_precision": config.suggest_precision}
    return TagsOutcome(
        tags=tags,
        left_out=left_out,
        train_counts=dict(zip(tags, train_targets.sum(axis=0).astype(int).tolist(), strict=True)),
        n_train=len(train_part),
        n_test=len(holdout),
        evaluation=evaluate_tags(truth, proba, tags, **targets),
        baseline=evaluate_tags(truth, baseline.predict_proba(holdout[TEXT].tolist()), tags, **targets),
        min_rows=config.min_examples_per_class,
    )


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def _plan_fields(
    train_part: pd.DataFrame, config: TrainConfig
) -> tuple[dict[str, tuple[list[str], dict[str, int]]], dict[str, str]]:
    """Per field: (head labels, excluded classes with counts); and the fields that cannot be trained.

    Every class with :data:`MIN_CLASS_ROWS` training rows is in the head (``min_examples_per_class``
    decides what is applied, not what is learned: see :func:`suggest_only`)."""
    plan: dict[str, tuple[list[str], dict[str, int]]] = {}
    skipped: dict[str, str] = {}
    for name in config.fields:
        counts = Counter(v for v in train_part[name] if v is not None)
        kept = sorted(label for label, n in counts.items() if n >= MIN_CLASS_ROWS)
        excluded = {
            label: n
            for label, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            if n < MIN_CLASS_ROWS
        }
        if len(kept) < 2:
            skipped[name] = (
                f"{len(kept)} class(es) with at least {MIN_CLASS_ROWS} training examples "
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
