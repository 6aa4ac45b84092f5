"""`triage` commands for the pipeline area."""

from triage.cli.app import app  # noqa: F401
