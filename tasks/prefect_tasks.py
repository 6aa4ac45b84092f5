"""The Prefect tasks: thin wrappers that add retries, result caching and progress to the stages.

The stage logic lives in plain modules (:mod:`triage.tasks.extract`, :mod:`triage.tasks.predict`, ...) that
import nothing of Prefect. Here:

- retries with exponential backoff and jitter, only for transient ticket-system failures
  (:func:`triage.adapters.errors.is_transient`);
- extract and predict persist their manifests (as JSON) under a cache key made of the run id (the
  flow-run id) and the window, in storage every worker reaches (:func:`result_storage`), so a retried
  flow run gets them back as ``Cached`` on any worker and reuses the lake partitions they point to;
  decide is cheap and re-runs; push is never cached (the audit trail is its idempotency record);
- one progress artifact per long stage and flow run, reused by retries (no stale bars).

Flows call a task through :func:`for_run`, which adds the run's result storage and a task-run name
saying which window (backfill batch) it works on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import hashlib
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from uuid import UUID

from prefect import Task, get_client, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType
from prefect.context import TaskRunContext
from prefect.filesystems import RemoteFileSystem
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff

from triage.adapters.base import TicketSystemAdapter
from triage.adapters.errors import is_transient
from triage.adapters.registry import build_adapter
from triage.errors import PipelineError
from triage.lake.io import check_uri
from triage.tasks import decide, extract, outcomes, predict, push, train
from triage.tasks.context import StageContext
from triage.tasks.manifest import DecideManifest, ExtractManifest, Manifest, PredictManifest, PushManifest
from triage.tasks.outcomes import OutcomesManifest
from triage.tasks.predict_parts import dask_parts
from triage.tasks.train import TrainManifest

T = TypeVar("T")
P = ParamSpec("P")
M = TypeVar("M", bound=Manifest)
CACHE_EXPIRATION = timedelta(days=7)
#: Cached manifests are stored as JSON: readable, and nothing is unpickled from shared storage.
RESULT_SERIALIZER = "json"


def result_storage(ctx: StageContext) -> Path | str:
    """Where cached stage results live: ``pipeline.results``, else ``_prefect_results`` in the lake.

    Every worker that reaches the lake reaches them, so a retry picked up by another worker still
    gets extract and predict back as ``Cached``. A local folder is given to Prefect as a path; a URL
    (``s3://...``, through fsspec) as a saved ``RemoteFileSystem`` block, which Prefect requires for
    anything but a path (the block holds the URL only: the endpoint and credentials come from the
    worker's environment, ``AWS_ENDPOINT_URL`` and the keys, as for the lake: see :func:`check_uri`).
    """
    pipeline = ctx.settings().pipeline
    location = pipeline.results or f"{pipeline.lake.rstrip('/')}/_prefect_results"
    if "://" not in location:
        return Path(location).expanduser().resolve()
    check_uri(location)
    name = "triage-results-" + hashlib.sha256(location.encode()).hexdigest()[:12]
    RemoteFileSystem(basepath=location).save(name, overwrite=True)
    return f"remote-file-system/{name}"


def for_run(stage: Task[P, T], ctx: StageContext) -> Task[P, T]:
    """``stage`` with the run's result storage, named for the window it works on."""
    return stage.with_options(
        result_storage=result_storage(ctx), task_run_name=f"{stage.name} {ctx.window_label}"
    )


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """``retry_condition_fn``: retry only 429s, 5xx, timeouts and malformed responses."""
    try:
        state.result()
    except Exception as exc:  # the task's own exception, re-raised by result()
        return is_transient(exc)
    return False


def _stage_key(stage: str) -> Callable[[TaskRunContext, dict[str, Any]], str]:
    def key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
        ctx: StageContext = parameters["ctx"]
        extra = parameters.get("purpose", "")
        return f"{stage}-{ctx.run_id}-{ctx.window_start:%Y%m%dT%H%M%S}-{ctx.window_end:%Y%m%dT%H%M%S}{extra}"

    return key


def _cached(stage: str) -> dict[str, Any]:
    """Task options of a stage whose manifest is persisted (JSON) and reused by a retried flow run."""
    return {
        "name": stage,
        "persist_result": True,
        "result_serializer": RESULT_SERIALIZER,
        "cache_key_fn": _stage_key(stage),
        "cache_expiration": CACHE_EXPIRATION,
    }


_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=10),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_if_transient,
}


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from sync code, even where an event loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        loop_running = False
    else:
        loop_running = True
    if not loop_running:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def with_adapter(ctx: StageContext, work: Callable[[TicketSystemAdapter], Awaitable[T]]) -> T:
    """Build the configured adapter, run ``work`` with it and close it."""
    async with build_adapter(ctx.settings().ticket_system) as adapter:
        return await work(adapter)


def logged(manifest: M) -> M:
    """Log what the stage wrote (rows, parts, counts) in the run's log, then pass it on."""
    get_run_logger().info(
        "%s: %d row(s) in %d part(s) of %s; %s",
        manifest.stage,
        manifest.rows,
        len(manifest.paths),
        manifest.table,
        manifest.counts,
    )
    return manifest


def _progress_artifact(description: str) -> UUID:
    """This flow run's progress artifact called ``description``, created once: an earlier attempt's
    bar is reused (from 0) instead of staying behind, stale, beside a new one."""
    run_id = flow_run.id
    if run_id:
        with get_client(sync_client=True) as client:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(run_id)]),
                    type=ArtifactFilterType(any_=["progress"]),
                )
            )
        for artifact in found:
            if artifact.description == description:
                update_progress_artifact(artifact_id=artifact.id, progress=0.0)
                return artifact.id
    # Prefect's async_dispatch types the result as UUID-or-coroutine; in a sync task it is the UUID.
    return create_progress_artifact(progress=0.0, description=description)  # type: ignore[return-value]


@contextmanager
def progress(stage: str) -> Iterator[Callable[[float], None]]:
    """The progress artifact of ``stage``; yields a callback taking a fraction 0..1."""
    artifact_id = _progress_artifact(f"{stage}: progress")
    last = [0.0]

    def report(fraction: float) -> None:
        percent = round(100.0 * max(0.0, min(1.0, fraction)), 1)
        if percent >= last[0] + 5.0 or (percent == 100.0 and last[0] < 100.0):
            update_progress_artifact(artifact_id=artifact_id, progress=percent)
            last[0] = percent

    yield report
    report(1.0)


class PhaseArtifacts:
    """Training's phases (:class:`triage.models.progress.Progress`) as this flow run's progress artifacts,
    one per phase (``train <phase>: progress``, through :func:`progress`: updated every 5%), and
    one log line per phase with its seconds. Steps from training's worker threads are sent in the
    context (Prefect's settings and client) of the thread that started the phase."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._phase: tuple[AbstractContextManager[Callable[[float], None]], Callable[[float], None]] | None
        self._phase, self._owner, self._context = None, 0, contextvars.copy_context()

    def started(self, phase: str, total: int) -> None:
        bar = progress(f"{self.stage} {phase}")
        self._phase = (bar, bar.__enter__())
        self._owner, self._context = threading.get_ident(), contextvars.copy_context()
        get_run_logger().info("%s: %s ...", self.stage, phase)

    def advanced(self, phase: str, done: int, total: int) -> None:
        if self._phase is None or total <= 0:
            return
        report = self._phase[1]
        if threading.get_ident() == self._owner:
            report(done / total)
        else:  # a worker thread: it has not inherited the flow run's context variables
            self._context.copy().run(report, done / total)

    def finished(self, phase: str, seconds: float) -> None:
        if self._phase is not None:
            self._phase[0].__exit__(None, None, None)  # the bar at 100%
            self._phase = None
        get_run_logger().info("%s: %s took %.1f s", self.stage, phase, seconds)


@task(
    **_cached("extract"),
    **_RETRIES,
)
def extract_task(ctx: StageContext, purpose: extract.Purpose = "triage") -> ExtractManifest:
    """Tickets updated in the window -> ``tickets`` (and ``quarantine``)."""
    with progress(f"extract ({purpose})") as report:
        return logged(
            run_async(
                with_adapter(
                    ctx, lambda adapter: extract.extract(ctx, adapter, purpose=purpose, on_progress=report)
                )
            )
        )


@task(
    **_cached("predict"),
)
def predict_task(ctx: StageContext, tickets: ExtractManifest) -> PredictManifest:
    """The current model over the eligible tickets -> ``predictions`` (parts on Dask: ``pipeline.dask_address``)."""
    address = ctx.settings().pipeline.dask_address
    with progress("predict") as report:
        parts = dask_parts(address) if address else None
        return logged(predict.predict(ctx, tickets, on_progress=report, run_parts=parts))


@task(name="decide", cache_policy=NO_CACHE, **_RETRIES)
def decide_task(ctx: StageContext, tickets: ExtractManifest, predictions: PredictManifest) -> DecideManifest:
    """Per-field rules against the ticket system's field metadata -> ``decisions``."""

    async def run(adapter: TicketSystemAdapter) -> DecideManifest:
        return decide.decide(ctx, tickets, predictions, await adapter.get_fields())

    return logged(run_async(with_adapter(ctx, run)))


@task(name="push", cache_policy=NO_CACHE, persist_result=False, **_RETRIES)
def push_task(ctx: StageContext, decisions: DecideManifest, tickets: ExtractManifest) -> PushManifest:
    """Re-check, write (or note) and audit; resumes from the audit trail after a crash."""
    if decisions.mode != ctx.mode:  # decide and push act on the run's one snapshot: never apart
        raise PipelineError(
            f"decisions made in {decisions.mode} mode, but this run pushes in {ctx.mode} mode"
        )
    with progress("push") as report:
        return logged(
            run_async(
                with_adapter(
                    ctx, lambda adapter: push.push(ctx, decisions, tickets, adapter, on_progress=report)
                )
            )
        )


@task(
    **_cached("train"),
)
def train_task(ctx: StageContext, history: ExtractManifest, promote: bool = True) -> TrainManifest:
    """Train on the resolved history, evaluate, register (promote if not worse)."""

    async def specs(adapter: TicketSystemAdapter) -> dict[str, Any]:
        return await adapter.get_fields()

    fields = run_async(with_adapter(ctx, specs))
    return logged(
        train.train_from_history(ctx, history, fields, promote=promote, progress=PhaseArtifacts("train"))
    )


@task(name="outcomes", cache_policy=NO_CACHE, **_RETRIES)
def outcomes_task(ctx: StageContext, history: ExtractManifest, days: int) -> OutcomesManifest:
    """Predictions of recently resolved tickets beside the values agents finally set -> ``outcomes``."""

    async def run(adapter: TicketSystemAdapter) -> OutcomesManifest:
        return outcomes.compare_outcomes(ctx, history, await adapter.get_fields(), days=days)

    return logged(run_async(with_adapter(ctx, run)))
