"""``triage run | backfill | retrain | nightly | demo``: run the flows locally (no server needed).

Without ``PREFECT_API_URL`` Prefect starts a temporary local server for the process (10-20 s);
with one set, the runs appear in that server's UI. Flows are imported inside the commands.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from triage.cli.app import app

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="config.yml (default: ./config.yml).")
]
ModeOption = Annotated[
    str | None, typer.Option("--mode", help="Override pipeline.mode: shadow, suggest or apply.")
]


def _config(config: Path | None) -> str | None:
    """Validate the configuration up front; exit 2 with the message naming the bad key."""
    from triage.settings import ConfigError, load_settings

    try:
        load_settings(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    return str(config) if config else None


def _fail(exc: Exception) -> None:
    from triage.redaction import redact

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
    path = _config(config)
    from flows.triage import TriageParams, triage_flow

    try:
        summary = triage_flow(TriageParams(config=path, mode=mode, since=since, until=until))
    except Exception as exc:
        _fail(exc)
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
    path = _config(config)
    from flows.backfill import BackfillParams, backfill_flow

    try:
        summary = backfill_flow(
            BackfillParams(start=start, end=end, batch_hours=batch_hours, mode=mode, config=path)
        )
    except Exception as exc:
        _fail(exc)
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
    path = _config(config)
    from flows.train import TrainParams, train_flow, train_notes

    try:
        trained = train_flow(TrainParams(config=path, days=days, promote=promote))
    except Exception as exc:
        _fail(exc)
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
    path = _config(config)
    from flows.nightly import NightlyParams, nightly_flow, outcome_notes

    try:
        outcomes = nightly_flow(NightlyParams(config=path, days=days, retrain=retrain))
    except Exception as exc:
        _fail(exc)
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

    # A quiet temporary Prefect server: no telemetry (no network here), flow logs only when they matter.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from flows.demo import DemoOptions, format_result, run_demo

    options = DemoOptions(
        folder=folder,
        tickets=tickets,
        open_tickets=open_tickets,
        data=data,
        seed=seed,
        max_length=max_length,
        target_precision=target_precision,
        plan=plan,
        window_seconds=window_seconds,
    )
    try:
        result = run_demo(options, say=typer.echo)
    except Exception as exc:
        _fail(exc)
    typer.echo(format_result(result))
