"""The nightly flow: retrain (promote if not worse), compare recent predictions with final values, and
compact the lake (one file per table and day; parts merged earlier than ``pipeline.retain_parts_days``
deleted)."""

from __future__ import annotations

from prefect import flow, task
from pydantic import BaseModel, Field

from triage.flows.common import current_run_id, publish, recorded_run, scheduled_time, start_flow
from triage.flows.train import history_context, train_notes, train_stages
from triage.tasks.compact import compact
from triage.tasks.context import StageContext
from triage.tasks.outcomes import OutcomesManifest
from triage.tasks.prefect_tasks import extract_task, for_run, outcomes_task


class NightlyParams(BaseModel):
    """Parameters of the nightly run (a form in the Prefect UI)."""

    config: str | None = Field(default=None, description="Path of config.yml on the worker.")
    days: int = Field(
        default=7, ge=1, description="Compare predictions for tickets resolved in the last N days."
    )
    history_days: int | None = Field(
        default=None, ge=1, description="Days of history to train on (default: pipeline.history_days)."
    )
    retrain: bool = Field(
        default=True, description="Train and evaluate a new model (promoted only if not worse)."
    )
    compact: bool = Field(
        default=True,
        description="Compact the lake under its lease: one file per table and day, old merged parts deleted.",
    )


@task(name="compact", retries=2, retry_delay_seconds=60)
def compact_task(ctx: StageContext) -> str:
    """Compact every table and vacuum, holding the lake's lease (waits for an hourly run to finish)."""
    return compact(ctx)


def outcome_notes(outcomes: OutcomesManifest) -> list[str]:
    lines = []
    for name, s in outcomes.summary.items():
        accuracy = "n/a" if s["accuracy"] is None else f"{s['accuracy']:.1%}"
        precision = "n/a" if s["write_precision"] is None else f"{s['write_precision']:.1%}"
        lines.append(
            f"{name}: {s['tickets']} resolved tickets compared, predictions right {accuracy}; "
            f"{s['written']} written, {precision} kept by agents, {s['overridden']} changed by agents"
        )
    return lines


@flow(
    name="nightly",
    description="Retrain + evaluate, and report how predictions compare with agents' final values.",
)
def nightly_flow(params: NightlyParams | None = None) -> OutcomesManifest:
    """History extract (once), optional retraining, and the outcomes report."""
    start_flow()
    params = params or NightlyParams()
    ctx = history_context(
        "nightly", params.config, params.history_days, run_id=current_run_id(), end=scheduled_time()
    )
    notes: list[str] = []
    with recorded_run(ctx, mode=None) as record:
        if params.retrain:
            manifests, trained = train_stages(ctx, promote=True)
            history = manifests[0]
            notes += train_notes(trained)
            record.model_version = trained.model_version
        else:
            history = for_run(extract_task, ctx)(ctx, purpose="history")
            manifests = [history]
        outcomes = for_run(outcomes_task, ctx)(ctx, history, params.days)
        manifests.append(outcomes)
        record.rows_out = outcomes.rows
        if params.compact:
            notes.append(compact_task.with_options(task_run_name=f"compact {ctx.window_label}")(ctx))
    publish(ctx, manifests, title="Nightly run", notes=[*notes, *outcome_notes(outcomes)])
    return outcomes
