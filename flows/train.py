"""The train flow: read resolved history through the adapter, train, evaluate, promote if not worse."""

from __future__ import annotations

from datetime import datetime, timedelta

from prefect import flow
from pydantic import BaseModel, Field

from triage.flows.common import (
    current_attempt,
    current_run_id,
    publish,
    recorded_run,
    run_settings,
    scheduled_time,
    start_flow,
)
from triage.flows.incremental import config_path
from triage.tasks.context import StageContext
from triage.tasks.prefect_tasks import extract_task, for_run, train_task
from triage.tasks.train import TrainManifest


class TrainParams(BaseModel):
    """Parameters of a training run (a form in the Prefect UI)."""

    config: str | None = Field(default=None, description="Path of config.yml on the worker.")
    days: int | None = Field(
        default=None,
        ge=1,
        description="Days of resolved history to learn from (default: pipeline.history_days).",
    )
    promote: bool = Field(
        default=True, description="Promote the new version if it is not worse than the current one."
    )


def history_context(
    flow_name: str, config: str | None, days: int | None, *, run_id: str, end: datetime
) -> StageContext:
    """A context whose window covers ``days`` of history before ``end``, with the run's settings snapshot."""
    settings = run_settings(config)
    span = timedelta(days=days or settings.pipeline.history_days)
    return StageContext(
        run_id=run_id,
        flow=flow_name,
        window_start=end - span,
        window_end=end,
        window_source="explicit",
        config_path=config_path(config),
        attempt=current_attempt(),
    ).with_settings(settings)


def train_stages(ctx: StageContext, *, promote: bool) -> tuple[list, TrainManifest]:
    """History extract then training; returns the manifests and the training manifest."""
    history = for_run(extract_task, ctx)(ctx, purpose="history")
    trained = for_run(train_task, ctx)(ctx, history, promote=promote)
    return [history, trained], trained


def train_notes(trained: TrainManifest) -> list[str]:
    lines = [
        f"model `{trained.model_version}`: {'promoted' if trained.promoted else 'not promoted'} - {trained.reason}",
        f"model folder: {trained.model_path}",
    ]
    for name, m in trained.metrics.items():
        lines.append(
            f"{name}: macro-F1 {_fmt(m.get('macro_f1'))} (baseline {_fmt(m.get('baseline_macro_f1'))}), "
            f"apply threshold {_fmt(m.get('apply_threshold'))} covering {_fmt(m.get('apply_coverage'))} of the hold-out"
        )
    return lines


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.3f}"


@flow(name="train", description="Learn from resolved tickets; promote the new model only if it is not worse.")
def train_flow(params: TrainParams | None = None) -> TrainManifest:
    """Extract resolved history, train and evaluate a model, register it in the store."""
    start_flow()
    params = params or TrainParams()
    ctx = history_context("train", params.config, params.days, run_id=current_run_id(), end=scheduled_time())
    with recorded_run(ctx, mode=None) as record:
        manifests, trained = train_stages(ctx, promote=params.promote)
        record.model_version, record.rows_in = trained.model_version, trained.rows
    publish(ctx, manifests, title="Training run", notes=train_notes(trained))
    return trained
