"""``triage config``: validate config.yml plus the environment and show the effective settings."""

from pathlib import Path
from typing import Annotated

import typer
import yaml

from triage.cli.app import app


@app.command("config")
def show_config(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="config.yml (default: ./config.yml).")
    ] = None,
) -> None:
    """Validate the configuration (and the adapter's own keys) and print it, secrets masked."""
    from adapters.registry import adapter_config
    from triage.settings import ConfigError, load_settings

    try:
        settings = load_settings(config)
        adapter_config(settings.ticket_system)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False))
