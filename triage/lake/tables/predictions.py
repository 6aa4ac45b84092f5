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
    input_hash: str | None = column(
        "sha256 of all that decides the outputs besides the model version: the text the model saw "
        "(`text_hash`), the inference precision, the device kind (cpu, cuda) and top-k. A prediction with "
        "the `model_version` and `input_hash` of one computed within `pipeline.reuse_days` is reused, "
        "not recomputed (null: written before reuse existed).",
        default=None,
    )
    reused_from_run: str | None = column(
        "The run that computed this prediction, where this run reused it (same `model_version` and "
        "`input_hash`, the same outputs); null: computed by this run.",
        default=None,
    )
    predicted_at: datetime = column(
        "When this run made the prediction (UTC), computed or reused (`reused_from_run`)."
    )


PREDICTIONS = Table(
    TableName.PREDICTIONS, PredictionRow, "The model's prediction per ticket and field, per run."
)
