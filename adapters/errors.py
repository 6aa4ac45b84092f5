"""Typed ticket-system errors a caller can act on.

Every error carries the HTTP status and the ticket system's request id (when it sent one) so an
operator can quote it to support. No error ever carries credentials or request headers. Their root,
:class:`TicketSystemError`, sits under triage's own root, :class:`triage.errors.TriageError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from triage.errors import TriageError


@dataclass(frozen=True)
class FieldError:
    """One field-level validation error, as Freshdesk reports it."""

    field: str
    message: str
    code: str = "invalid_value"

    def __str__(self) -> str:
        return f"{self.field}: {self.message} ({self.code})"


class TicketSystemError(TriageError):
    """Base class of every error an adapter raises."""

    #: Whether retrying the same request later may succeed.
    transient: bool = False
    #: What the audit records for a write this error refused: the class name unless a class says otherwise.
    reason_code: ClassVar[str] = "TicketSystemError"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "reason_code" not in cls.__dict__:
            cls.reason_code = cls.__name__

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        request_id: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.request_id = request_id
        self.method = method
        self.path = path
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [self.message]
        if self.method and self.path:
            parts.append(f"[{self.method} {self.path}]")
        if self.status_code is not None:
            parts.append(f"status={self.status_code}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return " ".join(parts)


class AuthenticationError(TicketSystemError):
    """401: the API key is missing or wrong."""


class ForbiddenError(TicketSystemError):
    """403: the key's agent lacks a privilege, or the plan lacks a feature."""


class NotFoundError(TicketSystemError):
    """404: no such ticket, route or domain."""


class GoneError(TicketSystemError):
    """405 on a ticket write: the ticket is spam or deleted and cannot be changed."""


class TicketSystemValidationError(TicketSystemError):
    """400/409: the ticket system rejected the request; ``errors`` lists each field.

    Not called ``ValidationError``, so it does not shadow pydantic's; the audit still records the
    refusal as ``ValidationError``, its reason code before the rename."""

    reason_code = "ValidationError"

    def __init__(self, message: str, *, errors: list[FieldError] | None = None, **kwargs) -> None:
        self.errors = list(errors or [])
        super().__init__(message, **kwargs)

    def __str__(self) -> str:
        base = super().__str__()
        if not self.errors:
            return base
        return base + ": " + "; ".join(str(e) for e in self.errors)

    @property
    def fields(self) -> list[str]:
        return [e.field for e in self.errors]


class RateLimitedError(TicketSystemError):
    """429 that outlasted the adapter's own waiting; ``retry_after`` in seconds."""

    transient = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class TransientError(TicketSystemError):
    """5xx, timeout or connection failure that outlasted the adapter's retries."""

    transient = True


class MalformedResponseError(TicketSystemError):
    """The ticket system answered with a body that cannot be parsed (not JSON, wrong shape)."""

    transient = True


class MalformedTicketError(TicketSystemError):
    """One ticket in an otherwise good response cannot be parsed; ``raw`` keeps it for quarantine."""

    def __init__(self, message: str, *, ticket_id: int | None = None, raw: object = None, **kwargs) -> None:
        self.ticket_id = ticket_id
        self.raw = raw
        super().__init__(message, **kwargs)


class UnknownLabelError(TicketSystemError):
    """A model label has no counterpart in the ticket system's field metadata; nothing was sent."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth retrying later (for Prefect ``retry_condition_fn``)."""
    return isinstance(exc, TicketSystemError) and exc.transient
