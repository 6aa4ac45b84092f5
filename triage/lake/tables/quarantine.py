"""The ``quarantine`` table: rows that could not be used, with their raw JSON."""

from __future__ import annotations

from datetime import datetime

from triage.lake.tables.base import Table, TableName, column, row_type, run_id_column


@row_type
class QuarantineRow:
    """One row a stage could not use."""

    run_id: str = run_id_column()
    stage: str = column("Stage that met the row.")
    ticket_id: int | None = column("Ticket id, when it could be read.", default=None)
    error: str = column("Why the row could not be used.")
    raw_json: str = column("The raw row exactly as received, as JSON.")
    quarantined_at: datetime = column("When (UTC).")


QUARANTINE = Table(TableName.QUARANTINE, QuarantineRow, "Rows that could not be used, with the raw JSON.")
