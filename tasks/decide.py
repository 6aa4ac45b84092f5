"""Decide: apply the per-field rules (:mod:`triage.tasks.rules`) to every eligible ticket into ``decisions``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from triage.adapters.base import FieldSpec
from triage.lake.runs import utcnow
from triage.tasks.context import StageContext
from triage.tasks.manifest import DecideManifest, ExtractManifest, PredictManifest, count_rows
from triage.tasks.rules import Prediction, decide_ticket
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
        lake.remove_parts("decisions", date=ctx.partition, run_id=ctx.run_id, prefix=PART_PREFIX)
        snapshots = latest_snapshots(lake.read_paths("tickets", tickets.paths), eligible_only=True)
        by_ticket: dict[int, dict[str, Prediction]] = {}
        versions: dict[int, str | None] = {}
        for row in lake.read_paths(
            "predictions",
            predictions.paths,
            columns=["ticket_id", "field", "label", "probability", "model_version"],
        ).to_pylist():
            by_ticket.setdefault(row["ticket_id"], {})[row["field"]] = Prediction(
                row["label"], row["probability"]
            )
            versions[row["ticket_id"]] = row["model_version"]
        fields = settings.enabled_fields()
        now = utcnow()
        rows: list[dict[str, Any]] = []
        for ticket_id, snapshot in snapshots.items():
            decisions = decide_ticket(
                current_values(row_ticket(snapshot), fields),
                by_ticket.get(ticket_id, {}),
                rules=settings.fields,
                specs=specs,
                thresholds=predictions.thresholds,
                touched=snapshot["updated_at"] > snapshot["created_at"],
            )
            rows.extend(
                {
                    "run_id": ctx.run_id,
                    "ticket_id": ticket_id,
                    "mode": mode,
                    **vars(d),
                    "model_version": versions.get(ticket_id, predictions.model_version),
                    "snapshot_updated_at": snapshot["updated_at"],
                    "decided_at": now,
                }
                for d in decisions.values()
            )
        paths: list[str] = []
        for start in range(0, len(rows), PART_ROWS):
            part = lake.write(
                "decisions",
                rows[start : start + PART_ROWS],
                date=ctx.partition,
                run_id=ctx.run_id,
                name=f"{PART_PREFIX}{len(paths) + 1:05d}",
            )
            if part:
                paths.append(part.path)
        counts = count_rows(rows, "field", "action")
        record.rows_in, record.rows_out, record.counts = len(snapshots), len(rows), counts
        record.model_version = predictions.model_version
        return DecideManifest(run_id=ctx.run_id, paths=paths, rows=len(rows), counts=counts, mode=mode)
