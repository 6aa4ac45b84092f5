"""The ``predictions`` table: the model's prediction per ticket and field, per run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyarrow as pa

from triage.lake.tables.base import Table, TableName, column, row_type, run_id_column

TOP_K = pa.list_(pa.struct([("label", pa.string()), ("probability", pa.float64())]))


@row_type
class PredictionRow:
    """The model's prediction for one field of one ticket."""

    run_id: str = run_id_column()
    ticket_id: int = column("Freshdesk ticket id.")
    field: str = column("Triaged field (`group`, `priority`, `type`, `cf_*`).")
    label: str | None = column("The model's top label.", default=None)
    probability: float | None = column("The model's probability of `label` (0..1).", default=None)
    #: ``({"label": ..., "probability": ...}, ...)``, best first.
    top_k: tuple[dict[str, Any], ...] | None = column(
        "The best labels with their probabilities, best first.", TOP_K, default=None
    )
    model_name: str | None = column("Model name (base encoder and head).", default=None)
    model_version: str | None = column("Model version id in the model store.", default=None)
    text_hash: str | None = column("sha256 of the exact text the model saw.", default=None)
    predicted_at: datetime = column("When the prediction was made (UTC).")


PREDICTIONS = Table(
    TableName.PREDICTIONS, PredictionRow, "The model's prediction per ticket and field, per run."
)
