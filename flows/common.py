"""What every flow does: identify the run, find its window, publish artifacts, record the run."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging.handlers import APILogHandler
from prefect.runtime import flow_run
from pydantic import SecretStr

from triage.flows.report import counts_rows, markdown_report
from triage.lake.lease import hold
from triage.redaction import install as install_redaction
from triage.redaction import register_secret
from triage.settings import API_KEY_SETTING, Settings, load_settings
from triage.tasks.context import StageContext
from triage.tasks.manifest import Manifest
from triage.tasks.runlog import recorded


def current_run_id() -> str:
    """The Prefect flow-run id (so lake rows link to the run in the UI), or a fresh id outside one."""
    return str(flow_run.id or uuid.uuid4())


def current_attempt() -> int:
    """Which attempt of the flow run this is: 1, then 2 and up after a retry (UI, CLI or a crash's rerun)."""
    return int(flow_run.run_count or 1)


def scheduled_time() -> datetime:
    """The run's scheduled start (UTC, whole seconds): the same on every retry of the run."""
    when = flow_run.scheduled_start_time
    return datetime.fromtimestamp(when.timestamp(), UTC).replace(microsecond=0)


#: The project's loggers whose warnings (429 waits, 5xx retries, ...) belong in the run's logs in the UI.
PROJECT_LOGGERS = ("triage",)


class _InRun(logging.Filter):
    """Pass only records logged inside a Prefect flow or task run (the API handler needs one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def _send_project_logs_to_run() -> None:
    """Send the project's log records (warnings and up, as configured) to the run's logs, not only to
    the worker's stdout: Prefect forwards its own loggers only."""
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, APILogHandler) for h in logger.handlers):
            handler = APILogHandler()
            handler.addFilter(_InRun())
            logger.addHandler(handler)


def start_flow() -> None:
    """Send the project's warnings to the run's logs and keep secrets out of every log handler
    (Prefect's included)."""
    _send_project_logs_to_run()
    install_redaction("", "prefect", *PROJECT_LOGGERS)


def run_settings(config: str | None, **overrides: Any) -> Settings:
    """The run's settings snapshot (see :func:`~triage.settings.load_settings`), holding the API key
    of ``ticket_system.credentials_block`` when it names a Prefect Secret block and no key is set.

    The key stays in this snapshot only (a ``SecretStr``), never in ``os.environ``: two accounts'
    runs in one process (``prefect serve``, a script) each call the ticket system with their own key.
    """
    settings = load_settings(config, **overrides)
    ticket_system = settings.ticket_system
    block = ticket_system.credentials_block
    if not block or not ticket_system.key_from_block:
        return settings
    from prefect.blocks.system import Secret

    # Prefect's async_dispatch types load() as block-or-coroutine; in a sync flow it is the block.
    key = Secret.load(block).get()  # type: ignore[union-attr]
    register_secret(key)
    keyed = ticket_system.model_copy(update={API_KEY_SETTING: SecretStr(key)})
    return settings.model_copy(update={"ticket_system": keyed})


@contextmanager
def recorded_run(ctx: StageContext, *, mode: str | None) -> Iterator[Any]:
    """The run's own ``runs`` row (stage ``run``): ``ok`` with its high-water mark, or ``failed``.

    A run with a ``mode`` pushes (triage, backfill batches): it holds the lake's lease throughout, so no
    other run pushes or resolves cut-off writes beside it (a refusal is recorded as the run's failure).
    Train and nightly runs take none: they write nothing to the ticket system and only their own
    partitions, and a long training would stall the hourly runs.
    """
    settings = ctx.settings()
    lake, wait = ctx.lake(settings), settings.pipeline.lease_wait_seconds
    lease = (
        nullcontext()
        if mode is None
        else hold(lake, run_id=ctx.run_id, flow=ctx.flow, ttl=settings.pipeline.lease_seconds, wait=wait)
    )
    with recorded(ctx, lake, "run", mode=mode) as record, lease:
        yield record


def publish(
    ctx: StageContext, manifests: Sequence[Manifest], *, title: str, notes: Sequence[str] = ()
) -> str:
    """Counts table, Markdown report and links to the lake partitions written, as run artifacts."""
    key = ctx.flow.replace("_", "-")
    rows = counts_rows(manifests)
    if rows:
        create_table_artifact(
            table=rows, key=f"{key}-counts", description=f"{title}: counts per stage and field"
        )
    report = markdown_report(ctx, manifests, title=title, notes=notes)
    create_markdown_artifact(markdown=report, key=f"{key}-report", description=title)
    lake = ctx.lake()
    for m in manifests:
        for folder in sorted({str(PurePosixPath(p).parent) for p in m.paths}):
            create_link_artifact(
                link=lake.url(folder), link_text=f"{m.table}: {folder}", description=f"{m.stage} output"
            )
    return report
