"""``triage run | backfill | retrain | nightly | demo``: run the flows locally (no server needed).

Without ``PREFECT_API_URL`` Prefect starts a temporary local server for the process (10-20 s);
with one set, the runs appear in that server's UI. Flows are imported inside the commands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar, cast

import typer

from triage.cli.app import app
from triage.cli.options import ConfigOption, settings_or_exit

if TYPE_CHECKING:
    from triage.settings import Mode
    from triage.simulator.config import Plan

T = TypeVar("T")
ModeOption = Annotated[
    str | None, typer.Option("--mode", help="Override pipeline.mode: shadow, suggest or apply.")
]


def validated_config(config: Path | None) -> str | None:
    """Check config.yml and the adapter's own keys before any flow starts; exit 2 naming the bad key.

    Only a check: the flow run takes the settings snapshot its stages use when it starts (see
    :class:`~triage.tasks.context.StageContext`), as a deployment's run does, and again on a retry.

    With a Prefect Secret block named (``ticket_system.credentials_block`` or
    ``FRESHDESK_API_KEY_SECRET_BLOCK``) and no key set, the key arrives in the run's settings when the
    flow starts, so the adapter's keys are checked there.
    """
    if not settings_or_exit(config).ticket_system.key_from_block:
        settings_or_exit(config, adapter=True)
    return str(config) if config else None


def flow_parameters(build: Callable[[], T]) -> T:
    """The flow's parameters from the command line; exit 2 naming each bad one before any flow starts."""
    from pydantic import ValidationError

    from triage.errors import validation_problems

    try:
        return build()
    except ValidationError as exc:
        for problem in validation_problems(
            exc, key=lambda loc: "--" + str(loc[0]).replace("_", "-") if loc else ""
        ):
            typer.echo(f"invalid parameters: {problem}", err=True)
        raise typer.Exit(2) from None


def check_window(since: datetime | None, until: datetime | None) -> None:
    """Exit 2 when ``--since`` lies after ``--until`` (or after now, when no end is given)."""
    from triage.lake.runs import as_utc, utcnow

    if since is None:
        return
    end, named = (
        (as_utc(until), f"--until ({as_utc(until):%Y-%m-%d %H:%M:%S} UTC)") if until else (utcnow(), "now")
    )
    if as_utc(since) > end:
        typer.echo(
            f"--since ({as_utc(since):%Y-%m-%d %H:%M:%S} UTC) is later than {named}: the window would be empty",
            err=True,
        )
        raise typer.Exit(2)


class _RefusalsWithoutTraceback(logging.Filter):
    """Prefect logs a failed run's exception with its traceback; a lease refusal (another run holds the
    lake, or took it over) is an expected outcome: its one-line message is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        from triage.lake.lease import LeaseError

        if record.exc_info and isinstance(record.exc_info[1], LeaseError):
            record.exc_info = record.exc_text = None
        return True


def _run_flow(start: Callable[[], T]) -> T:
    """Run a flow locally; a failure prints its (redacted) message and exits 1, without a traceback."""
    import os

    from triage.redaction import redact

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry: no network here
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RefusalsWithoutTraceback) for f in logger.filters):
            logger.addFilter(_RefusalsWithoutTraceback())
    try:
        return start()
    except Exception as exc:
        typer.echo(redact(f"error: {exc}"), err=True)
        raise typer.Exit(1) from None


@app.command("run")
def run_command(
    config: ConfigOption = None,
    mode: ModeOption = None,
    since: Annotated[
        datetime | None, typer.Option(help="Window start (UTC); default: the watermark.")
    ] = None,
    until: Annotated[datetime | None, typer.Option(help="Window end (UTC); default: now.")] = None,
) -> None:
    """One incremental triage run: extract, predict, decide, push."""
    path = validated_config(config)
    check_window(since, until)
    from triage.flows.incremental import TriageParams, triage_flow

    # --mode is passed as typed; TriageParams rejects other values (exit 2 naming the option).
    params = flow_parameters(
        lambda: TriageParams(config=path, mode=cast("Mode | None", mode), since=since, until=until)
    )
    summary = _run_flow(lambda: triage_flow(params))
    typer.echo(summary.report)


@app.command("backfill")
def backfill_command(
    start: Annotated[datetime, typer.Argument(help="First moment (UTC, inclusive), e.g. 2026-01-01.")],
    end: Annotated[datetime, typer.Argument(help="End of the range (UTC, exclusive).")],
    config: ConfigOption = None,
    mode: ModeOption = None,
    batch_hours: Annotated[int, typer.Option(help="Hours of updates per batch.")] = 24,
) -> None:
    """Triage a past date range in resumable batches."""
    path = validated_config(config)
    from triage.flows.backfill import BackfillParams, backfill_flow

    params = flow_parameters(
        lambda: BackfillParams(
            start=start, end=end, batch_hours=batch_hours, mode=cast("Mode | None", mode), config=path
        )
    )
    summary = _run_flow(lambda: backfill_flow(params))
    typer.echo(
        f"backfill {summary.run_id}: {summary.batches} batches, {len(summary.processed)} processed, {summary.skipped} already done"
    )


@app.command("retrain")
def retrain_command(
    config: ConfigOption = None,
    days: Annotated[
        int | None, typer.Option(help="Days of resolved history (default: pipeline.history_days).")
    ] = None,
    promote: Annotated[bool, typer.Option("--promote/--no-promote", help="Promote if not worse.")] = True,
) -> None:
    """Train from the helpdesk's resolved tickets (through the adapter), evaluate, promote if not worse."""
    path = validated_config(config)
    from triage.flows.train import TrainParams, train_flow, train_notes

    trained = _run_flow(lambda: train_flow(TrainParams(config=path, days=days, promote=promote)))
    typer.echo("\n".join(train_notes(trained)))


@app.command("nightly")
def nightly_command(
    config: ConfigOption = None,
    days: Annotated[
        int, typer.Option(help="Compare predictions of tickets resolved in the last N days.")
    ] = 7,
    retrain: Annotated[bool, typer.Option("--retrain/--no-retrain")] = True,
) -> None:
    """Retrain + evaluate, and report how recent predictions compare with agents' final values."""
    path = validated_config(config)
    from triage.flows.nightly import NightlyParams, nightly_flow, outcome_notes

    outcomes = _run_flow(lambda: nightly_flow(NightlyParams(config=path, days=days, retrain=retrain)))
    typer.echo("\n".join(outcome_notes(outcomes)))


@app.command("demo")
def demo_command(
    folder: Annotated[
        Path, typer.Option("--dir", help="Demo folder (lake, models, config); replaced on each run.")
    ] = Path("data/demo"),
    tickets: Annotated[int, typer.Option(help="Tickets in the simulated helpdesk.")] = 3500,
    open_tickets: Annotated[int, typer.Option("--open", help="Of which open and untriaged.")] = 300,
    data: Annotated[
        Path | None,
        typer.Option(help="Seed from a labelled CSV/Parquet (e.g. ../shared/data/tobi_bueck/...)."),
    ] = None,
    plan: Annotated[
        str, typer.Option(help="Freshdesk plan whose rate limits the simulator enforces.")
    ] = "growth",
    window_seconds: Annotated[
        float, typer.Option(help="Rate-limit window (60 = real time; smaller runs faster).")
    ] = 10.0,
    max_length: Annotated[int, typer.Option(help="Tokens per ticket the model reads.")] = 128,
    target_precision: Annotated[
        float, typer.Option(help="Precision a field must show on the hold-out before it is written.")
    ] = 0.90,
    seed: int = 42,
) -> None:
    """The main job: simulated Freshdesk -> train from its history -> triage in apply mode -> score."""
    import os

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # flow logs only when they matter
    from triage.flows.demo import DemoOptions, format_result, run_demo

    options = DemoOptions(
        folder=folder,
        tickets=tickets,
        open_tickets=open_tickets,
        data=data,
        seed=seed,
        max_length=max_length,
        target_precision=target_precision,
        plan=cast("Plan", plan),  # the simulator rejects an unknown plan
        window_seconds=window_seconds,
    )
    result = _run_flow(lambda: run_demo(options, say=typer.echo))
    typer.echo(format_result(result))
