"""The ``tickets`` table: ticket snapshots as each run read them."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

from triage.lake.tables.base import Table, TableName, column, row_type, run_id_column


@row_type
class TicketRow:
    """One ticket as one run read it."""

    run_id: str = run_id_column()
    purpose: str = column(
        "`triage` (tickets to classify) or `history` (resolved tickets read as training labels)."
    )
    ticket_id: int = column("Freshdesk ticket id.")
    subject: str | None = column("Subject as plain text.", default=None)
    description: str | None = column("Description as plain text.", default=None)
    status: int | None = column(
        "Native status (2 open, 3 pending, 4 resolved, 5 closed, custom ids).", pa.int32(), default=None
    )
    priority: int | None = column(
        "Native priority (1 Low, 2 Medium, 3 High, 4 Urgent).", pa.int32(), default=None
    )
    group_id: int | None = column("Native group id (null: no group).", default=None)
    type: str | None = column("Ticket type (null: none).", default=None)
    responder_id: int | None = column("Assigned agent id.", default=None)
    source: int | None = column("Native source (1 email, 2 portal, 3 phone, ...).", pa.int32(), default=None)
    tags: tuple[str, ...] | None = column("Tags at extraction time.", default=None)
    custom_fields: str | None = column("Custom fields at extraction time, as a JSON object.", default=None)
    created_at: datetime | None = column("When the ticket was created (UTC).", default=None)
    updated_at: datetime | None = column(
        "The ticket's `updated_at` when extracted: the snapshot version (UTC).", default=None
    )
    extracted_at: datetime = column("When triage read the ticket (UTC).")
    skip_reason: str | None = column(
        "Null when the ticket went on to prediction; else why not: `own_write` (its last change was "
        "triage's own write), `resolved` (a triage run met a resolved/closed ticket), `not_resolved` "
        "(a history read met an open ticket), `spam`, `deleted`.",
        default=None,
    )


TICKETS = Table(
    TableName.TICKETS,
    TicketRow,
    "Ticket snapshots as each run read them (to triage, or resolved history to train on).",
)
