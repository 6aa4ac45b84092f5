"""The incremental triage flow: extract -> predict -> decide -> push, over the next window.

The window ends at the run's scheduled start time (so a retry reads the same tickets) and starts at
the high-water mark of the last completed run minus an overlap (from the lake's ``runs`` table).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow
from pydantic import BaseModel, Field, model_validator

from triage.flows.common import (
    current_attempt,
    current_run_id,
    publish,
    recorded_run,
    run_settings,
    scheduled_time,
    start_flow,
)
from triage.flows.predict import predict_stage
from triage.lake import Lake, next_window
from triage.lake.runs import UtcDatetime
from triage.settings import Mode
from triage.tasks.context import StageContext
from triage.tasks.manifest import Counts, ExtractManifest, Manifest, PushManifest
from triage.tasks.prefect_tasks import decide_task, extract_task, for_run, push_task
from triage.tasks.runlog import whole_run


class TriageParams(BaseModel):
    """Parameters of a triage run (a form in the Prefect UI)."""

    config: str | None = Field(
        default=None,
        description="Path of config.yml on the worker (default: $TRIAGE_CONFIG or ./config.yml).",
    )
    mode: Mode | None = Field(default=None, description="Override pipeline.mode: shadow, suggest or apply.")
    since: UtcDatetime | None = Field(
        default=None,
        description="Explicit window start (UTC if no offset is given). Default: the lake's watermark minus the overlap.",
    )
    until: UtcDatetime | None = Field(
        default=None, description="Explicit window end (UTC). Default: the run's scheduled start time."
    )

    @model_validator(mode="after")
    def _ordered(self) -> TriageParams:
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until must be after since")
        return self


class RunSummary(BaseModel):
    """What a run did, as returned by the flow (and printed by the CLI)."""

    run_id: str
    flow: str
    window_start: datetime
    window_end: datetime
    mode: Mode | None = None
    stages: dict[str, dict[str, Any]] = Field(default_factory=dict)
    counts: dict[str, Counts] = Field(default_factory=dict)
    report: str = ""


def settings_overrides(mode: str | None) -> dict[str, Any]:
    return {"pipeline": {"mode": mode}} if mode else {}


def config_path(config: str | None) -> str | None:
    """``config`` made absolute when it exists, so every stage reads the same file."""
    return str(Path(config).resolve()) if config and Path(config).is_file() else config


def triage_context(params: TriageParams, *, run_id: str, end: datetime) -> StageContext:
    """The run's context: its settings snapshot, parsed here once (at the start of each attempt: see
    :class:`StageContext`), and its window from the parameters or from the lake's watermark."""
    overrides = settings_overrides(params.mode)
    settings = run_settings(params.config, **overrides)
    pipeline = settings.pipeline
    end = params.until or end
    window = next_window(
        Lake(pipeline.lake),
        end=end,
        overlap=timedelta(seconds=pipeline.overlap_seconds),
        initial_lookback=timedelta(hours=pipeline.initial_lookback_hours),
    )
    start, source = window.start, window.source
    if params.since is not None or params.until is not None:
        start, source = params.since or window.start, "explicit"
    return StageContext(
        run_id=run_id,
        flow="triage",
        window_start=start,
        window_end=end,
        window_source=source,
        config_path=config_path(params.config),
        overrides=overrides,
        attempt=current_attempt(),
    ).with_settings(settings)


def run_stages(ctx: StageContext) -> list[Manifest]:
    """The four stages of one window and the run's own record; returns the stage manifests.

    After a retry, extract and predict come back ``Cached`` and push resumes; the push manifest and
    the run's record then describe the writes of every attempt, not only the last one's.
    """
    with recorded_run(ctx, mode=ctx.mode) as record:
        extracted = for_run(extract_task, ctx)(ctx)
        predicted = predict_stage(ctx, extracted)  # in this run, or on the predict deployment's pool
        decided = for_run(decide_task, ctx)(ctx, extracted, predicted)
        pushed = whole_run(ctx, ctx.lake(), for_run(push_task, ctx)(ctx, decided, extracted))
        manifests = [extracted, predicted, decided, pushed]
        record.high_water_mark = extracted.high_water_mark
        record.model_version = predicted.model_version
        record.rows_in, record.rows_out = extracted.rows, pushed.rows
        record.counts = {
            f"{m.stage}:{field}": outcome for m in manifests for field, outcome in m.counts.items()
        }
    return manifests


def summarise_run(ctx: StageContext, manifests: list[Manifest], *, title: str) -> RunSummary:
    """Publish the run's artifacts and sum it up."""
    extracted, pushed = manifests[0], manifests[-1]
    notes = []
    if isinstance(extracted, ExtractManifest) and extracted.quarantined:
        notes.append(f"{extracted.quarantined} malformed ticket(s) quarantined (table `quarantine`).")
    if isinstance(pushed, PushManifest) and pushed.recovered:
        notes.append(f"{pushed.recovered} write(s) cut off by an earlier crash were resolved from a re-read.")
    return RunSummary(
        run_id=ctx.run_id,
        flow=ctx.flow,
        window_start=ctx.window_start,
        window_end=ctx.window_end,
        mode=ctx.mode,
        stages={m.stage: m.model_dump(mode="json") for m in manifests},
        counts={m.stage: m.counts for m in manifests},
        report=publish(ctx, manifests, title=title, notes=notes),
    )


@flow(name="triage", description="Classify tickets updated since the last run and write back what is safe.")
def triage_flow(params: TriageParams | None = None) -> RunSummary:
    """Incremental triage of the next window (see :class:`TriageParams`)."""
    start_flow()
    ctx = triage_context(params or TriageParams(), run_id=current_run_id(), end=scheduled_time())
    return summarise_run(ctx, run_stages(ctx), title="Triage run")
