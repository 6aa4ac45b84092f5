"""The ``runs`` table: one row per stage attempt, and a ``run`` row when an attempt ends.

Writing a stage's row and the watermark derived from the table are :mod:`triage.lake.runs`.
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

from triage.lake.tables.base import Table, TableName, column, row_type, run_id_column


@row_type
class RunRow:
    """One stage attempt of one run (or, with ``stage="run"``, the attempt of the whole run)."""

    run_id: str = run_id_column()
    flow: str = column("`triage`, `train`, `backfill` or `nightly`.")
    stage: str = column(
        "`extract`, `predict`, `decide`, `push`, `train`, `outcomes`, or `run` (the whole run)."
    )
    status: str = column("`ok` or `failed`.")
    window_start: datetime | None = column(
        "Start of the window read (inclusive, `updated_at >=`).", default=None
    )
    window_end: datetime | None = column("End of the window read (exclusive).", default=None)
    window_source: str | None = column(
        "`watermark` (continues the last completed run), `initial` (first run), `explicit` (given).",
        default=None,
    )
    high_water_mark: datetime | None = column(
        "Everything updated before this was read: the newest `updated_at` read (Freshdesk's clock), "
        "or the previous mark when nothing newer was. The next incremental window starts at the latest "
        "completed incremental run's mark minus `pipeline.overlap_seconds`.",
        default=None,
    )
    mode: str | None = column("Run mode (shadow, suggest, apply).", default=None)
    model_version: str | None = column("Model version used or produced.", default=None)
    rows_in: int | None = column("Rows the stage read.", default=None)
    rows_out: int | None = column("Rows the stage wrote.", default=None)
    counts: str | None = column(
        "Counts by outcome (JSON), e.g. decisions per field and action.", default=None
    )
    message: str | None = column("Error message of a failed stage, or a note.", default=None)
    parent_run_id: str | None = column("The backfill run a batch belongs to.", default=None)
    attempt: int | None = column(
        "Attempt of the flow run that wrote the row: 1, then 2 and up after a retry (from the Prefect "
        "UI, or a crash's rerun). A stage reused as `Cached` writes no row in later attempts.",
        pa.int32(),
        default=None,
    )
    started_at: datetime = column("Stage start (UTC).")
    finished_at: datetime = column("Stage end (UTC).")


RUNS = Table(
    TableName.RUNS,
    RunRow,
    "One row per stage attempt, and a `run` row when an attempt ends (see latest_runs).",
)
