"""`triage` commands for the simulator area."""

from triage.cli.app import app  # noqa: F401
