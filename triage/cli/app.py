"""The ``triage`` Typer application; command modules register themselves on it."""

import typer

app = typer.Typer(
    name="triage",
    help="On-premise AI triage for Freshdesk.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold credentials
)
