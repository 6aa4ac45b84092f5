"""Ticket snapshots in the ``tickets`` table: to and from :class:`~triage.adapters.base.Ticket`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc

from triage.adapters.base import FieldSpec, Ticket
from triage.adapters.errors import MalformedTicketError
from triage.lake import Lake
from triage.lake.tables.quarantine import QuarantineRow
from triage.lake.tables.tickets import TICKETS, TicketRow


def ticket_row(
    ticket: Ticket, *, run_id: str, purpose: str, extracted_at: datetime, skip_reason: str | None
) -> TicketRow:
    """The ``tickets`` row of one ticket."""
    return TicketRow(
        run_id=run_id,
        purpose=purpose,
        ticket_id=ticket.id,
        subject=ticket.subject,
        description=ticket.description,
        status=ticket.status,
        priority=ticket.priority,
        group_id=ticket.group_id,
        type=ticket.type,
        responder_id=ticket.responder_id,
        source=ticket.source,
        tags=tuple(ticket.tags),
        custom_fields=json.dumps(ticket.custom_fields, sort_keys=True, default=str),
        created_at=ticket.created_at,
        updated_at=ticket.updated_at,
        extracted_at=extracted_at,
        skip_reason=skip_reason,
    )


def row_ticket(row: TicketRow | Mapping[str, Any]) -> Ticket:
    """The :class:`Ticket` a ``tickets`` row was made from (a :class:`TicketRow`, or the same columns as a
    mapping: a history frame's records)."""
    if isinstance(row, TicketRow):
        return _ticket(
            row.ticket_id,
            row.subject,
            row.description,
            row.status,
            row.priority,
            row.group_id,
            row.type,
            row.responder_id,
            row.source,
            row.tags,
            row.custom_fields,
            row.created_at,
            row.updated_at,
        )
    return _ticket(*(row[name] for name in _TICKET_COLUMNS))


_TICKET_COLUMNS = (
    "ticket_id",
    "subject",
    "description",
    "status",
    "priority",
    "group_id",
    "type",
    "responder_id",
    "source",
    "tags",
    "custom_fields",
    "created_at",
    "updated_at",
)


def _ticket(
    ticket_id: int,
    subject: str | None,
    description: str | None,
    status: int | None,
    priority: int | None,
    group_id: int | None,
    type_: str | None,
    responder_id: int | None,
    source: int | None,
    tags: Iterable[str] | None,
    custom_fields: str | None,
    created_at: datetime | None,
    updated_at: datetime | None,
) -> Ticket:
    return Ticket(
        id=ticket_id,
        subject=subject or "",
        description=description or "",
        status=status,
        priority=priority,
        group_id=group_id,
        type=type_,
        responder_id=responder_id,
        source=source,
        tags=tuple(tags or ()),
        custom_fields=json.loads(custom_fields or "{}"),
        created_at=cast(datetime, created_at),  # pydantic refuses a missing one
        updated_at=cast(datetime, updated_at),
    )


def snapshots_at(lake: Lake, versions: set[tuple[int, datetime]]) -> dict[tuple[int, datetime], Ticket]:
    """The ticket snapshots the lake holds for these ``(ticket id, updated_at)`` versions (a filtered read
    of these tickets' rows)."""
    if not versions:
        return {}
    ids = sorted({ticket_id for ticket_id, _ in versions})
    rows = TICKETS.rows(lake.scan(TICKETS.name, filter=pc.field("ticket_id").isin(ids)))
    found: dict[tuple[int, datetime], Ticket] = {}
    for row in rows:
        if row.updated_at is not None and (row.ticket_id, row.updated_at) in versions:
            found[(row.ticket_id, row.updated_at)] = row_ticket(row)
    return found


def latest_tickets(table: pa.Table, *, eligible_only: bool = False) -> pa.Table:
    """One row per ticket of ``tickets`` rows (any columns, ``ticket_id`` and ``updated_at`` among them):
    the latest ``updated_at`` read, in the order tickets first appear; optionally only those not skipped.
    Columnar: only the two key columns become Python values."""
    latest: dict[int, tuple[int, datetime]] = {}
    ids, marks = table.column("ticket_id").to_pylist(), table.column("updated_at").to_pylist()
    for index, (ticket_id, updated_at) in enumerate(zip(ids, marks, strict=True)):
        seen = latest.get(ticket_id)
        if seen is None or updated_at >= seen[1]:
            latest[ticket_id] = (index, updated_at)
    chosen = table.take(pa.array([index for index, _ in latest.values()], pa.int64()))
    return chosen.filter(pc.field("skip_reason").is_null()) if eligible_only else chosen


def latest_snapshots(table: pa.Table, *, eligible_only: bool = False) -> dict[int, TicketRow]:
    """:func:`latest_tickets` of a run's ``tickets`` rows (every column) as rows, by ticket id."""
    return {row.ticket_id: row for row in TICKETS.rows(latest_tickets(table, eligible_only=eligible_only))}


def current_values(ticket: Ticket, fields: list[str]) -> dict[str, Any]:
    """Native value of each triaged field on ``ticket``."""
    return {name: ticket.native(name) for name in fields}


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
