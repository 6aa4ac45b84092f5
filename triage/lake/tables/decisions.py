"""The ``decisions`` table: what the rules decided per ticket and field, per run, whatever the mode."""

from __future__ import annotations

from datetime import datetime

from triage.lake.tables.base import Table, TableName, column, row_type, run_id_column


@row_type
class DecisionRow:
    """What the rules decided for one field of one ticket."""

    run_id: str = run_id_column()
    ticket_id: int = column("Freshdesk ticket id.")
    field: str = column("Triaged field.")
    mode: str = column("Run mode: `shadow` (nothing sent), `suggest` (private note), `apply`.")
    action: str = column(
        "What the rules decided, whatever the mode: `apply` (write `label`), `suggest` (mention it "
        "in a note), `skip` (neither). In shadow mode this is what *would* have happened."
    )
    label: str | None = column(
        "The value to write or suggest (Freshdesk's spelling); null on skip.", default=None
    )
    predicted_label: str | None = column("The model's top label.", default=None)
    probability: float | None = column("The model's probability of `predicted_label`.", default=None)
    apply_threshold: float | None = column(
        "Threshold to apply used for this field (null: none reachable).", default=None
    )
    suggest_threshold: float | None = column("Threshold to suggest used for this field.", default=None)
    current_label: str | None = column(
        "The ticket's value when extracted, as a label (null: empty).", default=None
    )
    reason_code: str = column("Why (machine-readable), see the reason codes table.")
    reason: str = column("Why, in words.")
    model_version: str | None = column("Model version that made the prediction.", default=None)
    snapshot_updated_at: datetime | None = column(
        "The ticket's `updated_at` the decision was made on.", default=None
    )
    decided_at: datetime = column("When the decision was made (UTC).")


DECISIONS = Table(
    TableName.DECISIONS,
    DecisionRow,
    "What the rules decided per ticket and field, per run, whatever the mode.",
)
