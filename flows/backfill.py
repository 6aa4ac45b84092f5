"""The backfill flow: triage a past date range in batches, resumable.

Each batch is a run of its own (flow ``backfill``, ``parent_run_id`` = the backfill's run) with the
four stages. Batches already completed by any earlier backfill over the same boundaries are skipped,
so a backfill that stopped half-way continues where it stopped when started again.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from prefect import flow
from pydantic import BaseModel, Field, model_validator

from triage.flows.common import current_attempt, current_run_id, publish, start_flow
from triage.flows.incremental import config_path, run_stages, settings_overrides
from triage.lake import Lake
from triage.lake.runs import UtcDatetime, completed_windows
from triage.settings import Mode, load_settings
from triage.tasks.context import StageContext
from triage.tasks.manifest import Manifest
from triage.tasks.prefect_tasks import progress


class BackfillParams(BaseModel):
    """Parameters of a backfill (a form in the Prefect UI)."""

    start: UtcDatetime = Field(description="First moment to triage (inclusive; UTC if no offset is given).")
    end: UtcDatetime = Field(description="End of the range (exclusive; UTC if no offset is given).")
    batch_hours: int = Field(default=24, ge=1, description="Hours of updates per batch.")
    mode: Mode | None = Field(
        default=None, description="Override pipeline.mode (shadow is the safe default)."
    )
    config: str | None = Field(default=None, description="Path of config.yml on the worker.")

    @model_validator(mode="after")
    def _ordered(self) -> BackfillParams:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class BackfillSummary(BaseModel):
    run_id: str
    batches: int
    skipped: int
    processed: list[str] = Field(default_factory=list, description="Run ids of the batches processed now.")


def batches(start: datetime, end: datetime, hours: int) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut into consecutive windows of ``hours`` (the last one shorter)."""
    step = timedelta(hours=hours)
    out = []
    while start < end:
        out.append((start, min(start + step, end)))
        start += step
    return out


@flow(name="backfill", description="Triage a past date range in resumable batches.")
def backfill_flow(params: BackfillParams) -> BackfillSummary:
    start_flow()
    parent = current_run_id()
    overrides = settings_overrides(params.mode)
    lake = Lake(load_settings(params.config, **overrides).pipeline.lake)
    windows = batches(params.start, params.end, params.batch_hours)
    done = completed_windows(lake, flow="backfill")
    processed: list[str] = []
    manifests: list[Manifest] = []
    skipped = 0
    with progress("backfill batches") as report:
        for index, (start, end) in enumerate(windows, 1):
            if (start, end) in done:
                skipped += 1
            else:
                ctx = StageContext(
                    # Stable per backfill run and batch: a retried backfill reuses its cached stages.
                    run_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"triage-backfill:{parent}:{start}:{end}")),
                    flow="backfill",
                    window_start=start,
                    window_end=end,
                    window_source="explicit",
                    config_path=config_path(params.config),
                    overrides=overrides,
                    parent_run_id=parent,
                    attempt=current_attempt(),
                )
                manifests += run_stages(ctx)
                processed.append(ctx.run_id)
            report(index / len(windows))
    parent_ctx = StageContext(
        run_id=parent,
        flow="backfill",
        window_start=params.start,
        window_end=params.end,
        window_source="explicit",
        config_path=config_path(params.config),
        overrides=overrides,
    )
    notes = [
        f"{len(windows)} batch(es) of {params.batch_hours} h: {len(processed)} processed, {skipped} already done."
    ]
    publish(parent_ctx, manifests, title="Backfill", notes=notes)
    return BackfillSummary(run_id=parent, batches=len(windows), skipped=skipped, processed=processed)
