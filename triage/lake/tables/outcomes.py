"""The ``outcomes`` table: predictions beside the values agents left on resolved tickets, per night."""

from __future__ import annotations

from datetime import datetime

from triage.lake.tables.base import Table, TableName, column, row_type, run_id_column


@row_type
class OutcomeRow:
    """One resolved ticket's field: the latest prediction before resolution, and what agents left."""

    run_id: str = run_id_column()
    ticket_id: int = column("Freshdesk ticket id (now resolved or closed).")
    field: str = column("Triaged field.")
    predicted_label: str | None = column(
        "The latest prediction before the ticket was resolved.", default=None
    )
    probability: float | None = column("Its probability.", default=None)
    action: str | None = column("What the rules decided for it (apply, suggest, skip).", default=None)
    written: bool | None = column(
        "Whether triage wrote a value to this field (audit status ok).", default=None
    )
    written_label: str | None = column("The value triage wrote, if any.", default=None)
    final_label: str | None = column("The value agents finally left on the resolved ticket.", default=None)
    correct: bool | None = column("`predicted_label == final_label`.", default=None)
    overridden: bool | None = column("Triage wrote a value and agents changed it.", default=None)
    prediction_run_id: str | None = column("The run that made the prediction.", default=None)
    model_version: str | None = column("Model version of the prediction.", default=None)
    resolved_updated_at: datetime | None = column(
        "`updated_at` of the resolved ticket as read.", default=None
    )


OUTCOMES = Table(
    TableName.OUTCOMES,
    OutcomeRow,
    "Predictions beside the values agents left on resolved tickets, per night (see latest_outcomes).",
)
