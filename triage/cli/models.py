"""`triage` commands for the models area."""

from triage.cli.app import app  # noqa: F401
