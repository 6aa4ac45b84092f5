"""Outcomes: how recent predictions compare with the values agents finally set (``outcomes`` table).

For every ticket resolved in the last ``days`` (from a history extract), the latest prediction made
before it was resolved is set beside the final value, with what the rules decided, whether triage
wrote a value, and whether agents changed what triage wrote.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from triage.adapters.base import FieldSpec, Ticket
from triage.lake import Lake
from triage.lake.tables.audit import AUDIT
from triage.lake.tables.decisions import DECISIONS
from triage.lake.tables.outcomes import OUTCOMES, OutcomeRow
from triage.lake.tables.predictions import PREDICTIONS
from triage.lake.tables.tickets import TICKETS
from triage.tasks.context import StageContext
from triage.tasks.manifest import ExtractManifest, Manifest
from triage.tasks.runlog import recorded
from triage.tasks.snapshots import label_of, latest_snapshots, row_ticket

PART = "outcomes-00001"


class OutcomesManifest(Manifest):
    stage: str = "outcomes"
    table: str = OUTCOMES.name.value
    #: field -> {"tickets", "accuracy", "written", "write_precision", "overridden"}
    summary: dict[str, dict[str, float | int | None]] = Field(default_factory=dict)


def compare_outcomes(
    ctx: StageContext, history: ExtractManifest, specs: Mapping[str, FieldSpec], *, days: int
) -> OutcomesManifest:
    """Write ``outcomes`` for tickets resolved within ``days`` before the window end."""
    settings = ctx.settings()
    lake = ctx.lake(settings)
    with recorded(ctx, lake, "outcomes", mode=None) as record:
        lake.remove_parts(OUTCOMES.name, date=ctx.partition, run_id=ctx.run_id, prefix="outcomes-")
        since = ctx.window_end - timedelta(days=days)
        snapshots = latest_snapshots(lake.read_paths(TICKETS.name, history.paths), eligible_only=True)
        tickets = {t: row_ticket(r) for t, r in snapshots.items()}
        resolved = {t: ticket for t, ticket in tickets.items() if ticket.updated_at >= since}
        fields = settings.enabled_fields()
        rows = outcome_rows(lake, ctx.run_id, resolved, specs, fields)
        part = OUTCOMES.write(lake, rows, date=ctx.partition, run_id=ctx.run_id, name=PART)
        summary = summarise(rows, fields)
        counts = {
            f: {
                k: int(v) for k, v in s.items() if k in ("tickets", "written", "overridden") and v is not None
            }
            for f, s in summary.items()
        }
        record.rows_in, record.rows_out, record.counts = len(resolved), len(rows), counts
        return OutcomesManifest(
            run_id=ctx.run_id,
            paths=[part.path] if part else [],
            rows=len(rows),
            counts=counts,
            summary=summary,
        )


def outcome_rows(
    lake: Lake, run_id: str, resolved: Mapping[int, Ticket], specs: Mapping[str, FieldSpec], fields: list[str]
) -> list[OutcomeRow]:
    """One row per resolved ticket and field that triage predicted before resolution (reads of these
    tickets' predictions, decisions and writes, columnar)."""
    if not resolved:
        return []
    ids = list(resolved)
    latest: dict[tuple[int, str], _Predicted] = {}
    predicted = lake.scan(
        PREDICTIONS.name, filter=pc.field("ticket_id").isin(ids), columns=list(_Predicted._fields)
    )
    for p in map(_Predicted._make, _columns(predicted)):
        if p.predicted_at.replace(microsecond=0) > resolved[p.ticket_id].updated_at:
            continue  # made after the resolution (compared at Freshdesk's whole-second precision)
        key = (p.ticket_id, p.field)
        if key not in latest or p.predicted_at > latest[key].predicted_at:
            latest[key] = p
    decided = lake.scan(
        DECISIONS.name,
        filter=pc.field("ticket_id").isin(ids),
        columns=["run_id", "ticket_id", "field", "action"],
    )
    actions = {(run, ticket_id, name): action for run, ticket_id, name, action in _columns(decided)}
    written: dict[tuple[int, str], tuple[str | None, datetime]] = {}
    writes = lake.scan(
        AUDIT.name,
        filter=(pc.field("phase") == "result")
        & (pc.field("status") == "ok")
        & pc.field("method").isin(["update", "bulk_update"])
        & pc.field("ticket_id").isin(ids),
        columns=["ticket_id", "field", "label", "completed_at"],
    )
    for ticket_id, name, label, completed_at in _columns(writes):
        key = (ticket_id, name)
        if key not in written or completed_at > written[key][1]:
            written[key] = (label, completed_at)
    rows = []
    for (ticket_id, name), p in sorted(latest.items()):
        if name not in fields:
            continue
        final = label_of(specs.get(name), resolved[ticket_id].native(name))
        wrote = written.get((ticket_id, name))
        rows.append(
            OutcomeRow(
                run_id=run_id,
                ticket_id=ticket_id,
                field=name,
                predicted_label=p.label,
                probability=p.probability,
                action=actions.get((p.run_id, ticket_id, name)),
                written=wrote is not None,
                written_label=wrote[0] if wrote else None,
                final_label=final,
                correct=final is not None and p.label == final,
                overridden=wrote is not None and wrote[0] != final,
                prediction_run_id=p.run_id,
                model_version=p.model_version,
                resolved_updated_at=resolved[ticket_id].updated_at,
            )
        )
    return rows


class _Predicted(NamedTuple):
    """The columns of a prediction that outcomes compare."""

    run_id: str
    ticket_id: int
    field: str
    label: str | None
    probability: float | None
    model_version: str | None
    predicted_at: datetime


def _columns(table: pa.Table) -> Iterator[tuple[Any, ...]]:
    """``table``'s rows as tuples, in its column order."""
    return zip(*(column.to_pylist() for column in table.columns), strict=True)


def summarise(rows: list[OutcomeRow], fields: list[str]) -> dict[str, dict[str, float | int | None]]:
    """Per field: tickets compared, prediction accuracy, writes, precision of writes, overridden writes."""
    summary: dict[str, dict[str, float | int | None]] = {}
    for name in fields:
        mine = [r for r in rows if r.field == name]
        writes = [r for r in mine if r.written]
        summary[name] = {
            "tickets": len(mine),
            "accuracy": sum(bool(r.correct) for r in mine) / len(mine) if mine else None,
            "written": len(writes),
            "write_precision": sum(not r.overridden for r in writes) / len(writes) if writes else None,
            "overridden": sum(bool(r.overridden) for r in writes),
        }
    return summary
