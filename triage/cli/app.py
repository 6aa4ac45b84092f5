"""The ``triage`` Typer application; command modules register themselves on it.

Every error triage raises on purpose (:class:`triage.errors.TriageError`) that a command leaves
uncaught ends here: its one-line (redacted) message on stderr and its exit status (2 for invalid
configuration, 1 otherwise), no traceback.
"""

from typing import Any

import typer
from typer.core import TyperGroup

from triage.errors import TriageError
from triage.redaction import redact


class _TriageGroup(TyperGroup):
    """The command group that turns an uncaught :class:`TriageError` into its message and exit status."""

    def invoke(self, ctx: Any) -> Any:  # typer's own (vendored) click.Context
        try:
            return super().invoke(ctx)
        except TriageError as exc:
            typer.echo(redact(str(exc)), err=True)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    name="triage",
    help="On-premise AI triage for Freshdesk.",
    no_args_is_help=True,
    cls=_TriageGroup,
    pretty_exceptions_show_locals=False,  # locals may hold credentials
)
