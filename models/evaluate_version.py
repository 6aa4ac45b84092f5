"""Evaluate a stored model version on a labelled table, beside a baseline trained on the same table.

The table is prepared and split exactly as training does (:func:`triage.models.training.prepare_frame`,
:func:`triage.models.training.split_holdout`), or a separate test table is given. The TF-IDF baseline is
trained on the table's training part, on the rows whose label the model's head knows (the same
footing training gives it); labels outside the head count as errors for both. The stored model
only predicts the test part. Model and baseline are scored and reported by the same functions as in
training (:func:`triage.models.evaluation.evaluate_beside_baseline`,
:func:`triage.models.report.build_report`). A model with a tags head is scored on the table's tags too
(where it has them), beside the TF-IDF + one-vs-rest baseline as in training, and with the precision of
the tags it would add at its own stored thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from triage.models.baseline import TfidfBaseline
from triage.models.evaluation import FieldComparison, evaluate_beside_baseline
from triage.models.head_fitting import HeadEstimator
from triage.models.inference import InferenceEngine
from triage.models.manifest import TagsManifest
from triage.models.report import EvaluationReport, build_report
from triage.models.tags import TAGS, TagsBaseline, count_tags, evaluate_tags, multi_hot
from triage.models.training import TEXT, data_hash, feature_limit, prepare_frame, split_holdout
from triage.models.training_config import TrainConfig


def evaluate_version(
    engine: InferenceEngine,
    frame: pd.DataFrame,
    *,
    dataset_name: str,
    test_frame: pd.DataFrame | None = None,
    fields: Sequence[str] | None = None,
    label_columns: dict[str, str] | None = None,
    text_columns: Sequence[str] = ("subject", "description"),
    slice_column: str | None = None,
    test_size: float = 0.2,
    seed: int = 42,
    command: str | None = None,
) -> EvaluationReport:
    """Score ``engine``'s model on ``frame``'s hold-out (or on ``test_frame``) beside the baseline.

    ``fields`` defaults to every field the model predicts; thresholds are chosen for the precision
    targets the model was trained with. Raises ``ValueError`` for fields the model does not predict.
    """
    manifest = engine.manifest
    fields = list(fields or engine.fields)
    unknown = [name for name in fields if name not in engine.fields]
    if unknown:
        raise ValueError(f"the model does not predict {unknown}; it predicts {engine.fields}")
    config = TrainConfig(
        fields=fields,
        label_columns={k: v for k, v in (label_columns or {}).items() if k in fields},
        text_columns=list(text_columns),
        test_size=test_size,
        seed=seed,
        target_precision=manifest.training.target_precision,
        suggest_precision=manifest.training.suggest_precision,
        tags=manifest.tags is not None,
    )
    data = prepare_frame(frame, config, slice_column=slice_column)
    if test_frame is None:
        train_rows, test_rows, split = split_holdout(data, config)
    else:
        test = prepare_frame(test_frame, config, slice_column=slice_column)
        train_rows, test_rows = np.arange(len(data)), np.arange(len(data), len(data) + len(test))
        data, split = pd.concat([data, test], ignore_index=True), "given test set"
    if len(train_rows) == 0 or len(test_rows) == 0:
        raise ValueError("the table needs rows for both the baseline's training part and the test part")
    with_tags = manifest.tags is not None and TAGS in data.columns and bool(data[TAGS].notna().all())
    digest = data_hash(data, [*fields, *([TAGS] if with_tags else [])])
    train_part, holdout = data.iloc[train_rows], data.iloc[test_rows].reset_index(drop=True)
    texts = holdout[TEXT].tolist()
    classifier = engine.model
    embeddings, sparse = (
        classifier.embed(texts, batch_tokens=engine.batch_tokens),
        classifier.sparse_features(texts),
    )
    features = classifier.head_features(embeddings, sparse)

    comparisons: dict[str, FieldComparison] = {}
    details: dict[str, dict[str, Any]] = {}
    for name in fields:
        labels = engine.labels(name)
        fit_part = train_part[train_part[name].isin(labels)]
        labelled = holdout[name].notna().to_numpy()
        if fit_part[name].nunique() < 2 or not labelled.any():
            raise ValueError(f"field {name!r}: the table has too few labelled rows the model knows")
        baseline = TfidfBaseline(seed=seed).fit(fit_part[TEXT].tolist(), fit_part[name].tolist())
        comparisons[name] = evaluate_beside_baseline(
            name,
            holdout[name].tolist(),
            HeadEstimator(classifier.head(name), labels, config),
            features[name],
            baseline,
            texts,
            slice_column=slice_column,
            slice_values=holdout[slice_column].tolist() if slice_column is not None else None,
            target_precision=config.target_precision,
            suggest_precision=config.suggest_precision,
        )
        details[name] = {"excluded_classes": dict(manifest.fields[name].excluded_classes)}

    tags, notes = None, []
    if manifest.tags is not None and with_tags:
        tags = _tags_section(
            manifest.tags, train_part, holdout, classifier.tag_proba(embeddings, sparse), config
        )
        added = tags["added"]
        notes.append(
            f"Tags: at its own thresholds the model adds {added['count']} tags to the {len(holdout)} test rows"
            + (f", precision {added['precision']:.3f}." if added["count"] else ".")
        )
    elif manifest.tags is not None:
        notes.append(
            "Tags: not scored: the model has a tags head, but the table (or the test table) has no tags "
            "(a 'tags' column, or tag_1 .. tag_n)."
        )
    same_data = digest == manifest.training.data_hash and split == manifest.training.split
    note = (
        "Same data and split as the model's training: the test rows are the model's own hold-out."
        if same_data
        else "The model was trained on other data or another split: if this table shares rows with its "
        "training data, the model's scores here are optimistic."
    )
    return build_report(
        dataset={
            "name": dataset_name,
            "n_train": len(train_rows),
            "n_test": len(test_rows),
            "data_hash": digest,
            "split": split,
        },
        model={
            "name": manifest.name,
            "version": manifest.version,
            "base_encoder": manifest.classifier.encoder_name,
            "head": manifest.classifier.head
            + (" + fine-tuned encoder" if manifest.classifier.fine_tuned else ""),
        },
        comparisons=comparisons,
        details=details,
        notes=[
            note,
            "Baseline: trained on the table's training part, on the labels the model's head knows.",
            *notes,
        ],
        command=command,
        tags=tags,
    )


def _tags_section(
    head: TagsManifest,
    train_part: pd.DataFrame,
    holdout: pd.DataFrame,
    proba: np.ndarray,
    config: TrainConfig,
) -> dict[str, Any]:
    """The report's ``tags`` section (as in training: :meth:`triage.models.tags.TagsOutcome.report`) for
    the model's tags head (``proba`` on the hold-out), beside the tags baseline trained on ``train_part``;
    ``added``: the tags it adds at its stored apply thresholds, and their precision."""
    tags = head.labels
    train_targets = multi_hot(train_part[TAGS].tolist(), tags)
    truth = multi_hot(holdout[TAGS].tolist(), tags)
    baseline = TagsBaseline(max_features=feature_limit(len(tags))).fit(
        train_part[TEXT].tolist(), train_targets
    )
    targets = {"target_precision": config.target_precision, "suggest_precision": config.suggest_precision}
    added = count_tags(holdout[TAGS].tolist(), proba, head, tags)
    return {
        "n_train": len(train_part),
        "n_test": len(holdout),
        "left_out": dict(head.left_out),
        "suggest_only": dict(head.suggest_only),
        "train_counts": dict(zip(tags, train_targets.sum(axis=0).astype(int).tolist(), strict=True)),
        "model": evaluate_tags(truth, proba, tags, **targets).to_dict(),
        "baseline": evaluate_tags(
            truth, baseline.predict_proba(holdout[TEXT].tolist()), tags, **targets
        ).to_dict(),
        "added": {
            "count": int(added.added.sum()),
            "precision": float(added.precision()) if added.added.any() else None,
        },
    }
