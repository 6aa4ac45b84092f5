"""``triage config``: validate config.yml plus the environment, show the effective settings and say
which commands they are enough for."""

import typer
import yaml

from triage.cli.app import app
from triage.cli.options import FILE_COMMANDS, RUN_COMMANDS, ConfigOption, connection_gaps, settings_or_exit


@app.command("config")
def show_config(config: ConfigOption = None) -> None:
    """Validate the configuration (and the adapter's own keys) and print it, secrets masked.

    Without the ticket system's connection keys (domain, API key) it is still valid for training,
    evaluating and predicting from files; the last line says what runs would need.
    """
    from triage.redaction import redact

    settings = settings_or_exit(config)
    missing = connection_gaps(settings)  # a ConfigError: its message and exit 2 (triage.cli.app)
    typer.echo(redact(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False)))
    if missing:
        typer.echo(f"ok for {FILE_COMMANDS}; {RUN_COMMANDS} need {' and '.join(missing)}", err=True)
    else:
        typer.echo(
            f"ok for every command: {FILE_COMMANDS}; {RUN_COMMANDS} against the ticket system", err=True
        )
