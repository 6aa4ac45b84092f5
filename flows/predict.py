"""Predict on another work pool: the predict stage of a triage run as a run of its own deployment.

With ``pipeline.predict_deployment`` set (``predict/predict``), the triage flow does not predict itself:
it starts a run of that deployment (deployed on its own work pool, a GPU machine's: prefect.yaml's
``predict`` entry, ``TRIAGE_PREDICT_WORK_POOL``), waits for it, and reads the stage's manifest from the
cached stage results both pools reach (``pipeline.results``, by default beside the lake). The child
runs the very same cached predict task under the parent's run id and window, so its rows are the
parent's, as if predicted in process, and a retry of either gets them back ``Cached``.

The child's idempotency key is made of the parent run and its window (:func:`predict_key`): a retried
parent gets its earlier child back, completed (nothing recomputed) or, if it failed, crashed or was
cancelled, set to run again as the UI's Retry does, never a second child. The deployment's
concurrency limit (1, enqueue) keeps one predict at a time on the pool's GPU.
"""

from __future__ import annotations

import time
from typing import Any, cast

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.responses import SetStateStatus
from prefect.deployments import run_deployment
from prefect.results import ResultStore, resolve_result_storage, resolve_serializer
from prefect.states import Scheduled, State
from pydantic import BaseModel, Field

from triage.errors import PipelineError
from triage.flows.common import start_flow
from triage.settings import load_settings
from triage.tasks.context import StageContext
from triage.tasks.manifest import ExtractManifest, PredictManifest
from triage.tasks.prefect_tasks import RESULT_SERIALIZER, for_run, predict_task, result_storage

#: How often the triage flow reads the state of the predict run it waits for.
POLL_SECONDS = 2.0


class PredictParams(BaseModel):
    """What a predict run needs from its triage run: the run's identity and window, its tickets."""

    context: StageContext = Field(description="The triage run's id, window, config path and overrides.")
    tickets: ExtractManifest = Field(description="The triage run's extract manifest.")


@flow(name="predict", description="The predict stage of a triage run, on this deployment's work pool.")
def predict_flow(params: PredictParams) -> PredictManifest:
    """Predict for the triage run in ``params`` (its rows carry that run's id), with this worker's settings."""
    start_flow()
    ctx = params.context
    ctx = ctx.with_settings(load_settings(ctx.config_path, **ctx.overrides))
    return for_run(predict_task, ctx)(ctx, params.tickets)


def predict_stage(ctx: StageContext, tickets: ExtractManifest) -> PredictManifest:
    """The triage run's predict: in this run, or as a run of ``pipeline.predict_deployment``."""
    deployment = ctx.settings().pipeline.predict_deployment
    if deployment is None:
        return for_run(predict_task, ctx)(ctx, tickets)
    return _on_deployment(ctx, tickets, deployment)


def predict_key(ctx: StageContext) -> str:
    """The predict run's idempotency key: the triage run and its window (the same on every retry)."""
    return f"triage-predict:{ctx.run_id}:{ctx.window_start.isoformat()}/{ctx.window_end.isoformat()}"


def _on_deployment(ctx: StageContext, tickets: ExtractManifest, deployment: str) -> PredictManifest:
    logger = get_run_logger()
    params = PredictParams(context=ctx, tickets=tickets)
    # Prefect's async_dispatch types the result as FlowRun-or-coroutine; in a sync flow it is the run.
    child = cast(
        FlowRun,
        run_deployment(
            deployment,
            parameters={"params": params.model_dump(mode="json")},
            idempotency_key=predict_key(ctx),
            flow_run_name=f"predict {ctx.window_label}",
            timeout=0,
        ),
    )
    with get_client(sync_client=True) as client:
        if child.state is not None and child.state.is_final() and not child.state.is_completed():
            logger.warning("predict run %s was %s: it runs again", child.name, child.state.name)
            retry: State[Any] = Scheduled(name="AwaitingRetry", message=f"Rerun by triage run {ctx.run_id}")
            if client.set_flow_run_state(child.id, retry, force=True).status != SetStateStatus.ACCEPT:
                raise PipelineError(f"predict run {child.name} ({child.id}) could not be rerun")
        logger.info("predict runs as %s of %s", child.name, deployment)
        while child.state is None or not child.state.is_final():
            time.sleep(POLL_SECONDS)
            child = client.read_flow_run(child.id)
    if not child.state.is_completed():
        raise PipelineError(
            f"predict run {child.name} ({child.id}) of {deployment} ended {child.state.name}: "
            f"{child.state.message or 'no message'}"
        )
    return _cached_manifest(ctx, tickets, child)


def _cached_manifest(ctx: StageContext, tickets: ExtractManifest, child: FlowRun) -> PredictManifest:
    """The manifest the predict run's task persisted under the stage's cache key, never computed here."""
    key = predict_task.cache_policy.compute_key(
        task_ctx=None,  # type: ignore[arg-type]  # the stage's key is made of its inputs only
        inputs={"ctx": ctx, "tickets": tickets},
        flow_parameters={},
    )
    storage = resolve_result_storage(result_storage(ctx))
    store = ResultStore(result_storage=storage, serializer=resolve_serializer(RESULT_SERIALIZER))  # type: ignore[arg-type]
    if not key or not store.exists(key):
        raise PipelineError(
            f"predict run {child.name} completed, but its manifest is not in this worker's "
            f"{ctx.settings().pipeline.results or 'lake'} results: both pools must reach the same lake and "
            "`pipeline.results`"
        )
    manifest = store.read(key).result
    return manifest if isinstance(manifest, PredictManifest) else PredictManifest.model_validate(manifest)
