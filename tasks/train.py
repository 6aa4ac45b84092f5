"""Train: a model from the helpdesk's resolved tickets (the agents' final values are the labels).

Reads the history extract from the lake, turns native values into labels with the ticket system's
field metadata, trains and evaluates (:func:`triage.models.training.train`), and registers the version in
the model store, which promotes it only if it is not worse than the current one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
from pydantic import Field, ValidationError

from triage.adapters.base import FieldSpec
from triage.errors import PipelineError
from triage.lake import TableName
from triage.models.progress import Progress, phase
from triage.models.store import ModelStore
from triage.models.tags import TAGS
from triage.models.training import train
from triage.models.training_config import TrainConfig
from triage.tasks.context import StageContext
from triage.tasks.manifest import ExtractManifest, Manifest
from triage.tasks.runlog import recorded
from triage.tasks.snapshots import label_of, latest_snapshots, row_ticket


class TrainManifest(Manifest):
    stage: str = "train"
    table: str = TableName.TICKETS.value
    model_version: str
    promoted: bool
    reason: str
    model_path: str
    #: field -> {"macro_f1", "baseline_macro_f1", "apply_threshold", "apply_coverage"}
    metrics: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    #: the tags head's hold-out numbers: tags learned and addable, micro/macro F1 beside the baseline's
    #: (empty: no tags head)
    tags: dict[str, float] = Field(default_factory=dict)


def history_frame(
    history: pd.DataFrame | list[dict[str, Any]],
    specs: Mapping[str, FieldSpec],
    fields: list[str],
    *,
    own_tag: str | None = None,
) -> pd.DataFrame:
    """``ticket_id``, ``updated_at`` (the resolution time: the latest snapshot is the resolved one),
    ``subject``, ``description``, one label column per field from ``tickets`` rows (None: unset) and
    ``tags`` (the ticket's tags but ``own_tag``, the one triage marks its writes with)."""
    records = []
    for row in history if isinstance(history, list) else history.to_dict("records"):
        ticket = row_ticket(row)
        labels = {name: label_of(specs.get(name), ticket.native(name)) for name in fields}
        records.append(
            {
                "ticket_id": ticket.id,
                "updated_at": ticket.updated_at,
                "subject": ticket.subject,
                "description": ticket.description,
                **labels,
                TAGS: [t for t in ticket.tags if own_tag is None or t.lower() != own_tag.lower()],
            }
        )
    columns = ["ticket_id", "updated_at", "subject", "description", *fields, TAGS]
    return pd.DataFrame.from_records(records, columns=columns)


def train_from_history(
    ctx: StageContext,
    history: ExtractManifest,
    specs: Mapping[str, FieldSpec],
    *,
    promote: bool = True,
    progress: Progress | None = None,
    **config_overrides: Any,
) -> TrainManifest:
    """Train on ``history``'s resolved tickets and register the model (promoting it if not worse).

    ``progress`` hears training's phases (:func:`triage.models.training.train`), then ``saving`` (the
    model, its report and the promotion comparison)."""
    settings = ctx.settings()
    lake = ctx.lake(settings)
    with recorded(ctx, lake, "train", mode=None) as record:
        rows = list(
            latest_snapshots(lake.read_paths(TableName.TICKETS, history.paths), eligible_only=True).values()
        )
        fields = settings.enabled_fields()
        frame = history_frame(rows, specs, fields, own_tag=settings.pipeline.triaged_tag)
        record.rows_in = len(frame)
        if frame.empty:
            raise PipelineError(
                f"no resolved tickets (statuses {settings.pipeline.history_statuses}) between "
                f"{ctx.window_start:%Y-%m-%d} and {ctx.window_end:%Y-%m-%d} to learn from"
            )
        try:
            config = TrainConfig.from_settings(
                settings, **{**settings.model.train_options, **config_overrides}
            )
        except ValidationError as exc:
            raise PipelineError(
                f"invalid training configuration (config.yml `model:` section): {exc}"
            ) from None
        result = train(frame, config, progress=progress)
        store = ModelStore(settings.model.store)
        with phase(progress, "saving"):
            if promote:
                version, promoted, reason = store.register(result)
            else:
                version, promoted, reason = (
                    store.save(result), False, "saved without promotion (promote=False)"
                )  # fmt: skip
        metrics = {
            name: {
                "macro_f1": outcome.evaluation.macro_f1,
                "baseline_macro_f1": outcome.baseline.macro_f1,
                "apply_threshold": outcome.evaluation.apply.threshold if outcome.evaluation.apply else None,
                "apply_coverage": outcome.evaluation.apply.coverage if outcome.evaluation.apply else None,
            }
            for name, outcome in result.fields.items()
        }
        tags: dict[str, float] = {}
        if result.tags is not None:
            model, baseline = result.tags.evaluation, result.tags.baseline
            tags = {
                "learned": len(result.tags.tags),
                "addable": len(result.tags.tags) - len(result.tags.suggest_only),
                "micro_f1": model.micro_f1,
                "baseline_micro_f1": baseline.micro_f1,
                "macro_f1": model.macro_f1,
                "baseline_macro_f1": baseline.macro_f1,
            }
        record.model_version, record.rows_out = version.version, len(frame)
        record.message = reason
        record.counts = {
            name: {"train": outcome.n_train, "test": outcome.n_test}
            for name, outcome in result.fields.items()
        }
        return TrainManifest(
            run_id=ctx.run_id,
            rows=len(frame),
            model_version=version.version,
            promoted=promoted,
            reason=reason,
            model_path=store.location_of(version.version),
            metrics=metrics,
            tags=tags,
            counts=record.counts,
        )
