"""``model.json``: everything known about one model version, as one pydantic schema.

It names the base encoder and how text reaches it (prefix, pooling, max length), the head and its
feature settings, the labels per field, the evaluated thresholds (apply/suggest, with the coverage
and precision they reached on the hold-out), the metrics of the model and of the baseline on the
same split, the classes left out as too rare, how the training data looked (hash, sizes, seed, the
training set's fingerprint and cutoff: ticket ids hashed, never text) and why the version was or
was not promoted, with the tickets both models were scored on. JSON only: reading it can never execute code.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from triage.errors import TriageError

MANIFEST_FILE = "model.json"

TicketKey = Literal["ticket_id", "text_hash"]
"""What identifies a ticket in a training-set fingerprint: its id, or (data without ids) its text's hash."""


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClassifierConfig(_Schema):
    """What the classifier needs to rebuild itself from a folder."""

    base_encoder: str = Field(
        description="Name the encoder was resolved from ('minilm', 'e5-small', a path)."
    )
    encoder_name: str = Field(description="The resolved encoder's own name.")
    query_prefix: str = ""
    pooling: Literal["mean"] = "mean"
    max_length: int
    head: Literal["hybrid", "linear"]
    hashing: dict[str, Any] | None = Field(default=None, description="HashingConfig of the hybrid head.")
    memory: dict[str, float | int] | None = Field(
        default=None, description="Neighbour memory settings (k, temperature); None: no memory."
    )
    labels: dict[str, list[str]] = Field(description="Per field, the labels in head column order.")
    tags: list[str] | None = Field(
        default=None, description="The tags head's tags in column order; None: no tags head."
    )
    fine_tuned: bool = False


class ThresholdPoint(_Schema):
    """A confidence threshold chosen on the hold-out to reach ``target`` precision (None: unreachable)."""

    target: float
    threshold: float | None
    coverage: float | None = Field(default=None, description="Share of hold-out tickets at or above it.")
    precision: float | None = Field(default=None, description="Precision of those tickets.")


class FieldManifest(_Schema):
    labels: list[str]
    apply: ThresholdPoint
    suggest: ThresholdPoint
    excluded_classes: dict[str, int] = Field(
        default_factory=dict,
        description="Labels left out of the head as too rare, with their training counts.",
    )
    suggest_only: dict[str, str] = Field(
        default_factory=dict,
        description="Head labels that may be suggested but never applied, with the reason: too few "
        "training rows, or too little hold-out evidence at the apply threshold.",
    )
    n_train: int
    n_test: int
    metrics: dict[str, float | None] = Field(
        default_factory=dict, description="Hold-out metrics: accuracy, macro_f1, ece, baseline_*."
    )


class TagsManifest(_Schema):
    """The optional multi-label tags head (:mod:`triage.models.tags`): a threshold per tag."""

    labels: list[str] = Field(description="The tags learned, in head column order.")
    apply: dict[str, ThresholdPoint] = Field(description="Per tag, the probability to add it at.")
    suggest: dict[str, ThresholdPoint] = Field(description="Per tag, the probability to suggest it at.")
    left_out: dict[str, int] = Field(
        default_factory=dict, description="Tags with too few training rows to learn, with their counts."
    )
    suggest_only: dict[str, str] = Field(
        default_factory=dict,
        description="Tags that may be suggested but never added, with the reason: too few training "
        "rows, or no probability at which the hold-out reaches the target precision.",
    )
    n_train: int
    n_test: int
    metrics: dict[str, float | None] = Field(
        default_factory=dict, description="Hold-out micro/macro F1 of the model and the baseline."
    )


class TrainingSet(_Schema):
    """Which tickets trained the model, as a fingerprint: never their text."""

    key: TicketKey = Field(
        description="What identifies a ticket: its id, or (data without ids) its text's hash."
    )
    count: int
    sha256: str = Field(description="SHA-256 of the sorted keys, one per line.")
    cutoff: datetime | None = Field(
        default=None,
        description="Newest resolution time (updated_at) among them; None: the data had no times.",
    )


class TrainingInfo(_Schema):
    data_hash: str
    seed: int
    n_rows: int
    n_train: int
    n_test: int
    split: str = Field(description="How the hold-out was made.")
    min_examples_per_class: int
    target_precision: float
    suggest_precision: float
    options: dict[str, Any] = Field(default_factory=dict, description="The remaining training options.")
    seconds: float | None = None
    training_set: TrainingSet | None = Field(
        default=None, description="Fingerprint and cutoff of the training rows (None: older versions)."
    )


class ScoredOn(_Schema):
    """The tickets a promotion scored both models on: none of them trained either model."""

    rule: str = Field(description="How they were chosen.")
    key: TicketKey
    count: int
    sha256: str = Field(description="SHA-256 of their sorted keys, one per line.")


class Promotion(_Schema):
    """The store's decision when the version was registered (or promoted by hand)."""

    promoted: bool
    reason: str
    compared_with: str | None = None
    comparison: dict[str, dict[str, float | None]] = Field(
        default_factory=dict,
        description="Per field: candidate and current macro-F1 and apply coverage on the tickets scored.",
    )
    scored_on: ScoredOn | None = None
    at: datetime


class ModelFolderError(TriageError, ValueError):
    """A model folder that must not or cannot be loaded; the message names the file."""


class ModelManifest(_Schema):
    format: Literal[1] = 1
    name: str
    version: str
    created_at: datetime
    classifier: ClassifierConfig
    fields: dict[str, FieldManifest]
    tags: TagsManifest | None = Field(default=None, description="The tags head; None: not trained.")
    training: TrainingInfo
    promotion: Promotion | None = None
    report_files: list[str] = Field(default_factory=list, description="Evaluation report files, relative.")

    @classmethod
    def read(cls, folder: Path) -> ModelManifest:
        path = folder / MANIFEST_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a model version folder (no {MANIFEST_FILE})")
        try:
            return cls.model_validate_json(path.read_bytes())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            raise ModelFolderError(f"{path}: not a valid model manifest ({where}: {first['msg']})") from None

    def write(self, folder: Path) -> Path:
        return write_json_atomic(folder / MANIFEST_FILE, self.model_dump(mode="json"))


def keys_sha256(keys: Iterable[str]) -> str:
    """The fingerprint of a set of ticket keys: SHA-256 of the sorted keys, one per line."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write JSON to a temporary file beside ``path``, fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
