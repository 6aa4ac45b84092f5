"""The backfill flow: triage a past date range in slices (``batch_hours`` each), resumable.

A slice is done when the lake's ``runs`` table holds a completed run of exactly its window in the
same mode (flow ``backfill`` for a slice run in process, ``triage`` for a child run): such slices are
skipped, so a backfill that stopped half-way continues where it stopped when started again (a new run
over the same range, or the UI's Retry of the stopped one). The backfill's progress artifact
(``backfill batches: progress``) counts the slices done, skipped ones included.

Each remaining slice runs in one of two ways (``BackfillParams.children``):

- **As a child run** of the triage deployment (``deployment``, default ``triage/hourly``): a flow run
  with the slice as its explicit window (``since``/``until``) and the backfill's mode, started with
  ``run_deployment`` and an idempotency key made of the deployment, the lake, the mode and the slice
  (:func:`child_key`), never of the backfill's own run. So the Retry of a backfill, or a new backfill
  after the first one was killed, gets the same child run back instead of starting a second one.
  Prefect returns the earlier run for a known key whatever its state, so the backfill looks at it:
  ``Completed`` counts as done (run again if the lake has no record of its window); ``Scheduled``,
  ``Pending`` or ``Running`` is waited for; ``Failed``, ``Crashed`` or ``Cancelled`` is run again, as
  the UI's Retry does (the same flow run set to ``AwaitingRetry``: extract and predict come back
  ``Cached``, push resumes from the audit trail), never skipped. The backfill waits for
  ``max_children`` children at a time (default 1: the lake's lease lets one run push at a time anyway)
  and stops, naming the slice and the child, when a child it waits for ends in any state but
  ``Completed``. A child left ``Running`` by a worker that died stays so until it is marked
  ``Crashed`` (by hand, or by a zombie-run automation on flow heartbeats); the backfill waits for it
  until then. The work pool must have room for the backfill and its children at once.
- **In this process**: each slice runs the four stages here, as a run of its own (flow ``backfill``,
  ``parent_run_id`` = the backfill's run, its run id derived from the backfill's run and the slice so
  a retried backfill reuses its cached stages).

``children`` unset (the default) means child runs when the backfill itself runs from a deployment
and the triage deployment exists on the server, in process otherwise (the CLI's ``triage backfill``,
the tests' ephemeral server, a server without that deployment). ``true`` insists on child runs (an
error when the deployment is missing), ``false`` keeps everything in process.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import pyarrow.compute as pc
from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.responses import SetStateStatus
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.runtime import deployment as this_deployment
from prefect.runtime import flow_run
from prefect.states import Scheduled, State
from pydantic import BaseModel, Field, model_validator

from triage.flows.common import current_attempt, current_run_id, publish, run_settings, start_flow
from triage.flows.incremental import config_path, run_stages, settings_overrides
from triage.lake import Lake, TableName
from triage.lake.runs import UtcDatetime
from triage.settings import Mode, Settings
from triage.tasks.context import StageContext
from triage.tasks.manifest import Manifest
from triage.tasks.prefect_tasks import progress

#: The triage deployment whose runs are a backfill's children unless ``deployment`` names another.
TRIAGE_DEPLOYMENT = "triage/hourly"
#: How often the backfill reads the state of the child runs it waits for.
POLL_SECONDS = 2.0


class BackfillParams(BaseModel):
    """Parameters of a backfill (a form in the Prefect UI)."""

    start: UtcDatetime = Field(description="First moment to triage (inclusive; UTC if no offset is given).")
    end: UtcDatetime = Field(description="End of the range (exclusive; UTC if no offset is given).")
    batch_hours: int = Field(default=24, ge=1, description="Hours of updates per batch (one child run each).")
    mode: Mode | None = Field(
        default=None, description="Override pipeline.mode (shadow is the safe default)."
    )
    config: str | None = Field(default=None, description="Path of config.yml on the worker.")
    children: bool | None = Field(
        default=None,
        description="Run each batch as a child run of `deployment`. Default: yes when this backfill runs "
        "from a deployment and that deployment exists, else in this run's process.",
    )
    deployment: str = Field(
        default=TRIAGE_DEPLOYMENT, description="The triage deployment (flow/deployment) of the child runs."
    )
    max_children: int = Field(
        default=1, ge=1, le=16, description="Child runs at a time (the lake lets one run push at a time)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> BackfillParams:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class BackfillSummary(BaseModel):
    run_id: str
    batches: int
    skipped: int
    processed: list[str] = Field(
        default_factory=list,
        description="Run ids of the batches processed now (the child runs' flow-run ids in child runs).",
    )
    children: bool = Field(default=False, description="Whether the batches ran as child runs.")


class ChildRunFailed(RuntimeError):
    """A child run of the backfill ended in a state other than Completed."""


def batches(start: datetime, end: datetime, hours: int) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut into consecutive windows of ``hours`` (the last one shorter)."""
    step = timedelta(hours=hours)
    out = []
    while start < end:
        out.append((start, min(start + step, end)))
        start += step
    return out


def done_windows(lake: Lake, *, mode: str) -> set[tuple[datetime, datetime]]:
    """Windows of every completed backfill batch or explicit-window triage run in ``mode``."""
    rows = lake.scan(
        TableName.RUNS,
        filter=(pc.field("flow").isin(["backfill", "triage"]))
        & (pc.field("stage") == "run")
        & (pc.field("status") == "ok")
        & (pc.field("mode") == mode),
        columns=["window_start", "window_end", "window_source", "flow"],
    ).to_pylist()
    return {
        (r["window_start"], r["window_end"])
        for r in rows
        if r["flow"] == "backfill" or r["window_source"] == "explicit"
    }


def child_key(deployment: str, lake: Lake, mode: str, start: datetime, end: datetime) -> str:
    """The idempotency key of the child run of one slice: the same for every backfill run that covers
    the slice on the same lake in the same mode (a Retry, or a new run after a killed one)."""
    place = lake.uri if "://" in lake.uri else str(Path(lake.root).resolve())
    where = hashlib.sha256(place.encode()).hexdigest()[:12]
    return f"triage-backfill:{deployment}:{mode}:{start.isoformat()}/{end.isoformat()}:lake-{where}"


@flow(
    name="backfill", description="Triage a past date range in resumable batches (child runs when deployed)."
)
def backfill_flow(params: BackfillParams) -> BackfillSummary:
    start_flow()
    parent = current_run_id()
    overrides = settings_overrides(params.mode)
    settings = run_settings(params.config, **overrides)
    mode = settings.pipeline.mode
    lake = Lake(settings.pipeline.lake)
    windows = batches(params.start, params.end, params.batch_hours)
    done = done_windows(lake, mode=mode)
    todo = [w for w in windows if w not in done]
    skipped = len(windows) - len(todo)
    parent_ctx = StageContext(
        run_id=parent,
        flow="backfill",
        window_start=params.start,
        window_end=params.end,
        window_source="explicit",
        config_path=config_path(params.config),
        overrides=overrides,
    ).with_settings(settings)
    children = _use_children(params)
    with progress("backfill batches") as report:
        report(skipped / len(windows))
        if children:
            processed = _run_children(params, lake, mode, todo, skipped, len(windows), report)
            manifests: list[Manifest] = []
        else:
            processed, manifests = _run_in_process(
                params, parent, overrides, settings, todo, skipped, len(windows), report
            )
    how = f"child runs of {params.deployment}" if children else "in process"
    notes = [
        f"{len(windows)} batch(es) of {params.batch_hours} h ({how}): {len(processed)} processed, "
        f"{skipped} already done."
    ]
    publish(parent_ctx, manifests, title="Backfill", notes=notes)
    return BackfillSummary(
        run_id=parent, batches=len(windows), skipped=skipped, processed=processed, children=children
    )


def _use_children(params: BackfillParams) -> bool:
    """Whether the slices run as child runs (see the module's docstring)."""
    if params.children is False or (params.children is None and this_deployment.id is None):
        return False
    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(params.deployment)
        except ObjectNotFound:
            if params.children:
                raise ValueError(
                    f"no deployment {params.deployment!r} on the Prefect server for the child runs: "
                    "deploy it (prefect deploy --all) or set children to false"
                ) from None
            get_run_logger().warning(
                "no deployment %r on the server: the batches run in this process", params.deployment
            )
            return False
    return True


def _run_in_process(
    params: BackfillParams,
    parent: str,
    overrides: dict[str, Any],
    settings: Settings,
    todo: list[tuple[datetime, datetime]],
    skipped: int,
    total: int,
    report: Callable[[float], None],
) -> tuple[list[str], list[Manifest]]:
    processed: list[str] = []
    manifests: list[Manifest] = []
    for start, end in todo:
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
        ).with_settings(settings)  # the backfill's one snapshot (taken when this attempt started)
        manifests += run_stages(ctx)
        processed.append(ctx.run_id)
        report((skipped + len(processed)) / total)
    return processed, manifests


def _run_children(
    params: BackfillParams,
    lake: Lake,
    mode: str,
    todo: list[tuple[datetime, datetime]],
    skipped: int,
    total: int,
    report: Callable[[float], None],
) -> list[str]:
    """Each slice of ``todo`` as a child run of the triage deployment, ``max_children`` at a time."""
    logger = get_run_logger()
    pending = deque(todo)
    active: dict[UUID, tuple[datetime, datetime]] = {}
    rows: list[dict[str, Any]] = []
    finished = skipped
    with get_client(sync_client=True) as client:
        while pending or active:
            while pending and len(active) < params.max_children:
                start, end = pending.popleft()
                child = _start_child(client, params, lake, mode, start, end)
                if child.state is not None and child.state.is_completed():  # done by an earlier backfill
                    logger.info("batch [%s, %s): child run %s already completed", start, end, child.name)
                    finished += 1
                    rows.append(_row(start, end, child, "completed before"))
                    report(finished / total)
                else:
                    active[child.id] = (start, end)
            if active:
                time.sleep(POLL_SECONDS)
            for child_id in list(active):
                child = client.read_flow_run(child_id)
                if child.state is None or not child.state.is_final():
                    continue
                start, end = active.pop(child_id)
                rows.append(_row(start, end, child, child.state.type.value))
                if not child.state.is_completed():
                    _slices_table(rows)
                    raise ChildRunFailed(
                        f"batch [{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M}): child run {child.name} "
                        f"({child_id}) of {params.deployment} ended {child.state.name}: "
                        f"{child.state.message or 'no message'}. Run the backfill again (or Retry it) "
                        "to resume: completed batches are skipped, this one runs again."
                    )
                finished += 1
                logger.info(
                    "batch [%s, %s) done by child run %s (%d/%d)", start, end, child.name, finished, total
                )
                report(finished / total)
    _slices_table(rows)
    return [row["child run"] for row in rows if row["outcome"] != "completed before"]


def _start_child(
    client: SyncPrefectClient, params: BackfillParams, lake: Lake, mode: str, start: datetime, end: datetime
) -> FlowRun:
    """The slice's child run: created, or the one its idempotency key already names, set to run again
    (as the UI's Retry does) when it had failed, crashed or been cancelled, or when it completed but
    the lake has no record of its window (a new lake in the same place)."""
    window: dict[str, Any] = {"since": start.isoformat(), "until": end.isoformat(), "mode": mode}
    if params.config:
        window["config"] = params.config
    # Prefect's async_dispatch types the result as FlowRun-or-coroutine; in a sync flow it is the run.
    child = cast(
        FlowRun,
        run_deployment(
            params.deployment,
            parameters={"params": window},
            idempotency_key=child_key(params.deployment, lake, mode, start, end),
            flow_run_name=f"backfill {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}",
            timeout=0,
        ),
    )
    state = child.state
    if state is None or not state.is_final():
        return child  # new, or still on its way: waited for
    if state.is_completed() and (start, end) in done_windows(lake, mode=mode):
        return child  # done by an earlier backfill
    why = "its record is missing from the lake" if state.is_completed() else f"it was {state.name}"
    get_run_logger().warning("batch [%s, %s): child run %s runs again: %s", start, end, child.name, why)
    retry: State[Any] = Scheduled(
        name="AwaitingRetry", message=f"Batch rerun by backfill {flow_run.id}: {why}"
    )
    result = client.set_flow_run_state(child.id, retry, force=True)
    if result.status != SetStateStatus.ACCEPT:
        raise ChildRunFailed(f"child run {child.name} ({child.id}) could not be rerun: {result.details}")
    return client.read_flow_run(child.id)


def _row(start: datetime, end: datetime, child: FlowRun, outcome: str) -> dict[str, Any]:
    return {
        "batch": f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}",
        "child run": str(child.id),
        "attempts": child.run_count,
        "outcome": outcome,
    }


def _slices_table(rows: list[dict[str, Any]]) -> None:
    if rows:
        create_table_artifact(
            table=rows, key="backfill-children", description="Backfill: the child run of each batch run now"
        )
