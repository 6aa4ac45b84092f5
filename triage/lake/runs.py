"""Run records (the ``runs`` table) and the incremental watermark derived from them.

Every stage attempt writes one row; each run ends with a ``stage="run"`` row. The next incremental
window starts where the latest *completed* incremental triage run's high-water mark says, minus an
overlap: a run that failed half-way does not advance it, so the next run reads its window again
(safe: decisions are re-made and the audit trail stops any write from happening twice).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import pyarrow.compute as pc
from pydantic import AfterValidator, Field

from triage.lake.io import Lake, WrittenPart
from triage.lake.tables.runs import RUNS, RunRow

WindowSource = Literal["watermark", "initial", "explicit"]
INCREMENTAL_SOURCES = ("watermark", "initial")


@dataclass(frozen=True)
class Window:
    """A half-open ``[start, end)`` range of ``updated_at`` and where its start came from."""

    start: datetime
    end: datetime
    source: WindowSource


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a time without a timezone (as the CLI parses one) is taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


#: ISO 8601 date or date-time. In a parameter's JSON schema Prefect's server checks a ``pattern`` before
#: it creates a run (it does not check ``format: date-time``), so a bad date is refused at once.
ISO_8601 = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"

#: A datetime field that is always timezone-aware UTC (naive input is read as UTC).
UtcDatetime = Annotated[datetime, AfterValidator(as_utc), Field(json_schema_extra={"pattern": ISO_8601})]


def record_stage(
    lake: Lake,
    *,
    run_id: str,
    flow: str,
    stage: str,
    status: Literal["ok", "failed"],
    started_at: datetime,
    window: Window | None,
    partition: datetime,
    finished_at: datetime | None = None,
    high_water_mark: datetime | None = None,
    mode: str | None = None,
    model_version: str | None = None,
    rows_in: int | None = None,
    rows_out: int | None = None,
    counts: Mapping[str, Any] | None = None,
    message: str | None = None,
    parent_run_id: str | None = None,
    attempt: int = 1,
) -> WrittenPart | None:
    """Append one row to ``runs`` (one file per stage attempt, so failed attempts stay visible)."""
    row = RunRow(
        run_id=run_id,
        flow=flow,
        stage=stage,
        status=status,
        window_start=window.start if window else None,
        window_end=window.end if window else None,
        window_source=window.source if window else None,
        high_water_mark=high_water_mark,
        mode=mode,
        model_version=model_version,
        rows_in=rows_in,
        rows_out=rows_out,
        counts=json.dumps(counts, sort_keys=True, default=str) if counts is not None else None,
        message=message,
        parent_run_id=parent_run_id,
        attempt=attempt,
        started_at=started_at,
        finished_at=finished_at or utcnow(),
    )
    name = f"{stage}-{started_at.astimezone(UTC):%Y%m%dT%H%M%S%f}"
    return RUNS.write(lake, [row], date=partition, run_id=run_id, name=name)


def last_high_water_mark(lake: Lake, *, flow: str = "triage") -> datetime | None:
    """The high-water mark of the latest completed incremental run of ``flow``, or ``None``."""
    wanted = (
        (pc.field("flow") == flow)
        & (pc.field("stage") == "run")
        & (pc.field("status") == "ok")
        & pc.field("window_source").isin(list(INCREMENTAL_SOURCES))
        & pc.field("high_water_mark").is_valid()
    )
    for day in lake.dates(RUNS.name):  # newest first: the mark of a run lies in its own date partition
        marks = lake.scan(RUNS.name, dates=[day], filter=wanted, columns=["high_water_mark"])
        if marks.num_rows:
            return pc.max(marks.column("high_water_mark")).as_py()
    return None


def next_window(
    lake: Lake,
    *,
    end: datetime,
    overlap: timedelta,
    initial_lookback: timedelta,
    flow: str = "triage",
) -> Window:
    """The incremental window ending at ``end`` (the run's scheduled time, so a retry reads the same)."""
    mark = last_high_water_mark(lake, flow=flow)
    if mark is None:
        return Window(start=end - initial_lookback, end=end, source="initial")
    return Window(start=min(mark - overlap, end), end=end, source="watermark")


def run_history(lake: Lake, run_id: str) -> list[dict[str, Any]]:
    """Every runs row of one run, oldest first (for reports and tests)."""
    rows = lake.scan(RUNS.name, filter=pc.field("run_id") == run_id).to_pylist()
    return sorted(rows, key=lambda r: r["started_at"])


def completed_windows(lake: Lake, *, flow: str) -> set[tuple[datetime, datetime]]:
    """``(window_start, window_end)`` of every completed run of ``flow`` (a backfill resumes past them)."""
    rows = lake.scan(
        RUNS.name,
        filter=(pc.field("flow") == flow) & (pc.field("stage") == "run") & (pc.field("status") == "ok"),
        columns=["window_start", "window_end"],
    ).to_pylist()
    return {(r["window_start"], r["window_end"]) for r in rows}
