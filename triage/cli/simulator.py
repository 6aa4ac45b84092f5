"""``triage simulator``: serve a local Freshdesk until Ctrl-C."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from triage.cli.app import app

PLANS = ("growth", "pro", "enterprise", "trial", "unlimited")


@app.command("simulator")
def simulator(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: a free one).")] = 8765,
    host: Annotated[str, typer.Option(help="Interface to bind; keep it local.")] = "127.0.0.1",
    data: Annotated[
        Path | None,
        typer.Option(help="CSV or Parquet of labelled tickets (subject, body, queue, priority, type)."),
    ] = None,
    tickets: Annotated[
        int | None, typer.Option(help="Tickets in all (default 2000; with --data: every row).", min=1)
    ] = None,
    open_tickets: Annotated[
        int, typer.Option("--open", help="How many are open and untriaged.", min=0)
    ] = 200,
    plan: Annotated[str, typer.Option(help=f"Rate-limit plan: {', '.join(PLANS)}.")] = "growth",
    window_seconds: Annotated[float, typer.Option(help="Rate-limit window length.", min=0.001)] = 60.0,
    api_key: Annotated[
        str | None, typer.Option(help="The API key to accept (default: a random one, printed).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generator and sampling.")] = 42,
    required_field: Annotated[
        list[str] | None, typer.Option(help="Make a field required for agents (repeatable), e.g. cf_product.")
    ] = None,
    bulk_delay: Annotated[float, typer.Option(help="Seconds before a bulk update is applied.", min=0)] = 0.5,
    agent_edits_per_minute: Annotated[
        float, typer.Option(help="Agents edit unresolved tickets at this rate while it serves.", min=0)
    ] = 0.0,
    open_preset_fraction: Annotated[
        float,
        typer.Option(
            help="Share of open tickets with values set by their requester or an agent.", min=0, max=1
        ),
    ] = 0.0,
    clock_offset: Annotated[
        float,
        typer.Option(help="Seconds the simulator's clock runs ahead of this machine's (negative: behind)."),
    ] = 0.0,
) -> None:
    """Serve a simulated Freshdesk (REST API v2 under /api/v2, admin API under /_simulator/)."""
    from triage.simulator import DatasetError, Simulator, SimulatorConfig, serve_forever

    if plan not in PLANS:
        raise typer.BadParameter(f"must be one of {', '.join(PLANS)}", param_hint="--plan")
    options: dict[str, object] = {
        "host": host,
        "port": port,
        "data": data,
        "tickets": tickets if tickets is not None or data is not None else 2000,
        "open_tickets": open_tickets,
        "plan": plan,
        "window_seconds": window_seconds,
        "seed": seed,
        "required_for_agents": tuple(required_field or ()),
        "bulk_delay_seconds": bulk_delay,
        "agent_edits_per_minute": agent_edits_per_minute,
        "open_preset_fraction": open_preset_fraction,
        "clock_offset_seconds": clock_offset,
    }
    if api_key:
        options["api_key"] = api_key
    try:
        sim = Simulator(SimulatorConfig(**options))  # type: ignore[arg-type]
    except (DatasetError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    def announce(ready: Simulator) -> None:
        stats = ready.stats()["tickets"]
        admin = ready.base_url.removesuffix("/api/v2") + "/_simulator/" if ready.base_url else ""
        typer.echo(
            f"Freshdesk simulator: {stats['total']} tickets, {stats['open_with_hidden_labels']} open to triage"
        )
        typer.echo(f"base URL:  {ready.base_url}")
        typer.echo(f"API key:   {ready.api_key}")
        typer.echo(f"admin API: {admin} (same key)")
        if ready.config.agent_edits_per_minute:
            typer.echo(f"agents:    {ready.config.agent_edits_per_minute:g} edits a minute")
        typer.echo(f"plan:      {ready.config.plan}, window {ready.config.window_seconds:g} s. Ctrl-C stops.")

    try:
        serve_forever(sim, host, port, on_ready=announce)
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled once it has shut down
        typer.echo("simulator stopped")
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host}:{port}: {exc}", err=True)
        raise typer.Exit(2) from None
