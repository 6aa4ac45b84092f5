"""The ``audit`` table: every request to the ticket system, an intent before and results after."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

from triage.lake.tables.base import Table, TableName, column, row_type, run_id_column


@row_type
class AuditRow:
    """One audit row: the intent to send a change, or one result of it."""

    run_id: str = run_id_column()
    decision_run_id: str | None = column("The run whose decision this write carries out.", default=None)
    write_id: str = column("One id per request sent; an intent and its result share it.")
    phase: str = column(
        "`intent` (written before sending) or `result` (after; every intent gets one, on crash "
        "recovery by re-reading the ticket)."
    )
    ticket_id: int = column("Freshdesk ticket id.")
    field: str = column("Field written (or suggested, for notes).")
    label: str | None = column("Value written or suggested.", default=None)
    method: str = column("`update` (PUT one ticket), `bulk_update` or `note`.")
    status: str = column(
        "`pending` (intent), `ok` (written), `failed` (the ticket system refused), `skipped` (not "
        "sent, see reason_code), `not_applied` (cut off and a re-read found the value absent, or "
        "never sent because push stopped: owed, the next push sends it), `unknown` (a cut-off note "
        "on a ticket system whose notes cannot be listed: counted as sent, never repeated)."
    )
    reason_code: str | None = column(
        "Why a write failed or was skipped, or how a result was found: see the audit reason codes.",
        default=None,
    )
    http_status: int | None = column(
        "HTTP status of the request (null when nothing was sent).", pa.int32(), default=None
    )
    request_id: str | None = column("Freshdesk's X-Request-Id of the request, for support.", default=None)
    job_id: str | None = column("Freshdesk bulk-update job id.", default=None)
    error: str | None = column("Error message from the ticket system (never credentials).", default=None)
    snapshot_updated_at: datetime | None = column(
        "The ticket's `updated_at` the decision was made on.", default=None
    )
    ticket_updated_at: datetime | None = column(
        "The ticket's `updated_at` after our write, when Freshdesk returned it.", default=None
    )
    sent_at: datetime | None = column("When the request was about to be sent (UTC).", default=None)
    completed_at: datetime | None = column("When the result was known (UTC); null on intents.", default=None)
    model_version: str | None = column("Model version behind the decision.", default=None)


AUDIT = Table(
    TableName.AUDIT,
    AuditRow,
    "Every request to the ticket system: an intent before, results after (all tries: see latest_changes).",
)
