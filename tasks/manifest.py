"""Stage manifests: what a stage wrote (lake paths, row counts), passed between tasks instead of data."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from triage.lake import TableName

#: ``counts[field][outcome] = n``; ``"*"`` is the field for ticket-level counts.
Counts = dict[str, dict[str, int]]


class Manifest(BaseModel):
    """Base of every stage manifest."""

    model_config = ConfigDict(frozen=True)

    stage: str
    run_id: str
    table: str
    paths: list[str] = []
    rows: int = 0
    counts: Counts = {}


class ExtractManifest(Manifest):
    stage: str = "extract"
    table: str = TableName.TICKETS.value
    purpose: str = "triage"
    eligible: int = 0
    quarantined: int = 0
    quarantine_paths: list[str] = []
    started_at: datetime
    high_water_mark: datetime


class PredictManifest(Manifest):
    stage: str = "predict"
    table: str = TableName.PREDICTIONS.value
    model_name: str | None = None
    model_version: str | None = None
    #: field -> (apply threshold, suggest threshold) from the model's evaluation.
    thresholds: dict[str, tuple[float | None, float | None]] = {}
    #: field -> {label: why}: labels the model may suggest but never apply (model.json's suggest_only).
    suggest_only: dict[str, dict[str, str]] = {}
    #: tag -> (apply threshold, suggest threshold) of the model's tags head; empty: it has none.
    tag_thresholds: dict[str, tuple[float | None, float | None]] = {}
    #: tag -> why: tags the model may suggest but never add (model.json's ``tags.suggest_only``).
    tag_suggest_only: dict[str, str] = {}


class DecideManifest(Manifest):
    stage: str = "decide"
    table: str = TableName.DECISIONS.value
    mode: str


class PushManifest(Manifest):
    stage: str = "push"
    table: str = TableName.AUDIT.value
    mode: str
    sent: int = 0
    recovered: int = 0


def add_count(counts: dict[str, dict[str, int]], field: str, outcome: str, n: int = 1) -> None:
    """Increment ``counts[field][outcome]`` in place."""
    bucket = counts.setdefault(field, {})
    bucket[outcome] = bucket.get(outcome, 0) + n
