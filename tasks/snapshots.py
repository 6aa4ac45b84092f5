"""Ticket snapshots in the ``tickets`` table: to and from :class:`~triage.adapters.base.Ticket`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from triage.adapters.base import FieldSpec, Ticket
from triage.adapters.errors import MalformedTicketError
from triage.lake import Lake
from triage.lake.tables.quarantine import QuarantineRow


def ticket_row(
    ticket: Ticket, *, run_id: str, purpose: str, extracted_at: datetime, skip_reason: str | None
) -> dict[str, Any]:
    """The ``tickets`` row of one ticket."""
    return {
        "run_id": run_id,
        "purpose": purpose,
        "ticket_id": ticket.id,
        "subject": ticket.subject,
        "description": ticket.description,
        "status": ticket.status,
        "priority": ticket.priority,
        "group_id": ticket.group_id,
        "type": ticket.type,
        "responder_id": ticket.responder_id,
        "source": ticket.source,
        "tags": list(ticket.tags),
        "custom_fields": json.dumps(ticket.custom_fields, sort_keys=True, default=str),
        "created_at": ticket.created_at,
        "updated_at": ticket.updated_at,
        "extracted_at": extracted_at,
        "skip_reason": skip_reason,
    }


def row_ticket(row: dict[str, Any]) -> Ticket:
    """The :class:`Ticket` a ``tickets`` row was made from."""
    return Ticket(
        id=row["ticket_id"],
        subject=row["subject"] or "",
        description=row["description"] or "",
        status=row["status"],
        priority=row["priority"],
        group_id=row["group_id"],
        type=row["type"],
        responder_id=row["responder_id"],
        source=row["source"],
        tags=tuple(row["tags"] or ()),
        custom_fields=json.loads(row["custom_fields"] or "{}"),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def snapshots_at(lake: Lake, versions: set[tuple[int, datetime]]) -> dict[tuple[int, datetime], Ticket]:
    """The ticket snapshots the lake holds for these ``(ticket id, updated_at)`` versions."""
    if not versions:
        return {}
    ids = sorted({ticket_id for ticket_id, _ in versions})
    rows = lake.scan("tickets", filter=pc.field("ticket_id").isin(ids)).to_pylist()
    return {
        (r["ticket_id"], r["updated_at"]): row_ticket(r)
        for r in rows
        if (r["ticket_id"], r["updated_at"]) in versions
    }


def current_values(ticket: Ticket, fields: list[str]) -> dict[str, Any]:
    """Native value of each triaged field on ``ticket``."""
    return {name: ticket.native(name) for name in fields}


def latest_snapshots(table: pa.Table, *, eligible_only: bool = False) -> dict[int, dict[str, Any]]:
    """One row per ticket (the latest ``updated_at`` read), optionally only those not skipped."""
    latest: dict[int, dict[str, Any]] = {}
    for row in table.to_pylist():
        seen = latest.get(row["ticket_id"])
        if seen is None or row["updated_at"] >= seen["updated_at"]:
            latest[row["ticket_id"]] = row
    if eligible_only:
        return {tid: row for tid, row in latest.items() if row["skip_reason"] is None}
    return latest


def label_of(spec: FieldSpec | None, native: Any) -> str | None:
    """The label of a native value (``None`` when unset, or unknown to the field's metadata)."""
    if native is None or native == "":
        return None
    return spec.to_label(native) if spec else str(native)


def quarantine_row(run_id: str, stage: str, exc: MalformedTicketError) -> QuarantineRow:
    """The ``quarantine`` row of a ticket the adapter could not parse: its raw JSON and the error."""
    return QuarantineRow(
        run_id=run_id,
        stage=stage,
        ticket_id=exc.ticket_id,
        error=str(exc),
        raw_json=json.dumps(exc.raw, sort_keys=True, default=str),
        quarantined_at=datetime.now(UTC),
    )
