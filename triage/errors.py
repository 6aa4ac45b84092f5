"""The errors triage raises on purpose, under one root, and the one formatter of pydantic's errors.

:class:`TriageError` is the root: a caller (the CLI's top-level handler) catches it once for the
one-line message, and its ``exit_code``. Under it:

- :class:`ConfigError` (here): invalid configuration, exit code 2;
- :class:`PipelineError` (here): a stage cannot run (no model, no data);
- :class:`triage.adapters.errors.TicketSystemError` and its typed errors (401, 403, 400/409, ...);
- the models' errors (:class:`triage.models.training.TrainingError`, :class:`triage.models.store.StoreError`, ...).

Each keeps the built-in base that callers already catch (``ValueError``, ``RuntimeError``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from triage.redaction import is_secret_key, redact

if TYPE_CHECKING:  # the CLI imports this module before any command: it stays light
    from pydantic import ValidationError


class TriageError(Exception):
    """Root of every error triage raises on purpose; its message is meant for the operator."""

    #: The CLI's exit status when the error reaches it: 1 a failure, 2 bad input.
    exit_code: int = 1


class ConfigError(TriageError, ValueError):
    """Invalid configuration: the message names each offending key and what is wrong (never a secret)."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class PipelineError(TriageError, RuntimeError):
    """A stage cannot run (no model, no data): the message says what to do."""


_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")


def shown_input(value: Any) -> str:
    """`` (got VALUE)`` for an error message, with a URL's user:password and known secrets masked."""
    return redact(_URL_USERINFO.sub(r"\1***@", f" (got {value!r})"))


def _dotted(loc: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in loc)


def validation_problems(
    exc: ValidationError, *, key: Callable[[Sequence[int | str]], str] = _dotted
) -> list[str]:
    """One line per error of ``exc``: ``KEY: what is wrong (got VALUE)``.

    ``key`` names the offending input from pydantic's ``loc`` (default ``pipeline.mode``; the
    adapter's keys are prefixed ``ticket_system.``, the CLI names its ``--option``); a line whose key
    is empty is the message alone. The input is never shown for a secret-looking key, an unknown
    key, or the whole model (a model-level error: it may hold a secret).
    """
    lines = []
    for err in exc.errors():
        name = key(err["loc"])
        unknown = err["type"] == "extra_forbidden"
        message = "unknown key" if unknown else err["msg"].removeprefix("Value error, ")
        quiet = not err["loc"] or unknown or is_secret_key(name)
        shown = "" if quiet else shown_input(err.get("input"))
        lines.append(f"{name}: {message}{shown}" if name else message)
    return lines
