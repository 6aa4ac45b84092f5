"""Decide: apply the per-field rules (:mod:`triage.tasks.rules`) to every eligible ticket into ``decisions``.

Where the predictions carry tags (field ``tags``: in ``top_k``, each tag at or above a threshold with its own
probability), each tag is decided on its own thresholds, which predict's manifest carries from the model
version's ``model.json`` (:func:`triage.tasks.rules.decide_tags`): decide reads no model manifest."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from triage.adapters.base import FieldSpec
from triage.lake.runs import utcnow
from triage.lake.tables.decisions import DECISIONS, DecisionRow
from triage.lake.tables.predictions import PREDICTIONS
from triage.lake.tables.tickets import TICKETS
from triage.models.tags import TAGS
from triage.tasks.context import StageContext
from triage.tasks.manifest import Counts, DecideManifest, ExtractManifest, PredictManifest, add_count
from triage.tasks.rules import Decision, Prediction, decide_tags, decide_ticket
from triage.tasks.runlog import recorded
from triage.tasks.snapshots import current_values, latest_snapshots, row_ticket

PART_PREFIX = "decide-"
PART_ROWS = 100_000


def decide(
    ctx: StageContext,
    tickets: ExtractManifest,
    predictions: PredictManifest,
    specs: Mapping[str, FieldSpec],
) -> DecideManifest:
    """One decision per eligible ticket and enabled field; ``specs`` is the ticket system's metadata."""
    settings = ctx.settings()
    lake = ctx.lake(settings)
    mode = settings.pipeline.mode
    with recorded(ctx, lake, "decide", mode=mode) as record:
        lake.remove_parts(DECISIONS.name, date=ctx.partition, run_id=ctx.run_id, prefix=PART_PREFIX)
        snapshots = latest_snapshots(lake.read_paths(TICKETS.name, tickets.paths), eligible_only=True)
        by_ticket: dict[int, dict[str, Prediction]] = {}
        tags_of: dict[int, list[Prediction]] = {}
        versions: dict[int, str | None] = {}
        read = lake.read_paths(
            PREDICTIONS.name,
            predictions.paths,
            columns=["ticket_id", "field", "label", "probability", "model_version", "top_k"],
        )
        for ticket_id, field, label, probability, version, top_k in zip(
            *(column.to_pylist() for column in read.columns), strict=True
        ):
            if field == TAGS:
                tags_of[ticket_id] = [Prediction(k["label"], k["probability"]) for k in top_k or ()]
            else:
                by_ticket.setdefault(ticket_id, {})[field] = Prediction(label, probability)
            versions[ticket_id] = version
        fields = settings.enabled_fields()
        now = utcnow()
        rows: list[DecisionRow] = []
        for ticket_id, snapshot in snapshots.items():
            ticket = row_ticket(snapshot)
            decisions = decide_ticket(
                current_values(ticket, fields),
                by_ticket.get(ticket_id, {}),
                rules=settings.fields,
                specs=specs,
                thresholds=predictions.thresholds,
                suggest_only=predictions.suggest_only,
                touched=ticket.updated_at > ticket.created_at,
            )
            tag_decisions = []
            if predictions.tag_thresholds and ticket_id in tags_of:
                tag_decisions = decide_tags(
                    ticket.tags,
                    tags_of[ticket_id],
                    thresholds=predictions.tag_thresholds,
                    suggest_only=predictions.tag_suggest_only,
                )
            rows.extend(
                decision_row(
                    d,
                    run_id=ctx.run_id,
                    ticket_id=ticket_id,
                    mode=mode,
                    model_version=versions.get(ticket_id, predictions.model_version),
                    snapshot_updated_at=snapshot.updated_at,
                    decided_at=now,
                )
                for d in [*decisions.values(), *tag_decisions]
            )
        paths: list[str] = []
        for start in range(0, len(rows), PART_ROWS):
            part = DECISIONS.write(
                lake,
                rows[start : start + PART_ROWS],
                date=ctx.partition,
                run_id=ctx.run_id,
                name=f"{PART_PREFIX}{len(paths) + 1:05d}",
            )
            if part:
                paths.append(part.path)
        counts: Counts = {}
        for row in rows:
            add_count(counts, row.field, row.action)
        record.rows_in, record.rows_out, record.counts = len(snapshots), len(rows), counts
        record.model_version = predictions.model_version
        return DecideManifest(run_id=ctx.run_id, paths=paths, rows=len(rows), counts=counts, mode=mode)


def decision_row(
    decision: Decision,
    *,
    run_id: str,
    ticket_id: int,
    mode: str,
    model_version: str | None,
    snapshot_updated_at: datetime | None,
    decided_at: datetime,
) -> DecisionRow:
    """The ``decisions`` row of one field's decision."""
    return DecisionRow(
        run_id=run_id,
        ticket_id=ticket_id,
        field=decision.field,
        mode=mode,
        action=decision.action,
        label=decision.label,
        predicted_label=decision.predicted_label,
        probability=decision.probability,
        apply_threshold=decision.apply_threshold,
        suggest_threshold=decision.suggest_threshold,
        current_label=decision.current_label,
        reason_code=decision.reason_code,
        reason=decision.reason,
        model_version=model_version,
        snapshot_updated_at=snapshot_updated_at,
        decided_at=decided_at,
    )
