"""``triage config``: validate config.yml plus the environment and show the effective settings."""

import typer
import yaml

from triage.cli.app import app
from triage.cli.options import ConfigOption, settings_or_exit


@app.command("config")
def show_config(config: ConfigOption = None) -> None:
    """Validate the configuration (and the adapter's own keys) and print it, secrets masked."""
    from triage.redaction import redact

    settings = settings_or_exit(config, adapter=True)
    typer.echo(redact(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False)))
