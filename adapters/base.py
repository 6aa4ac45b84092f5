"""The ticket-system contract: Open Ticket AI's async adapter interface plus what triage needs.

Open Ticket AI's three methods are kept so an OTAI-style adapter ports over:
``find_tickets(query)``, ``find_first_ticket(query)`` and ``update_ticket(ticket_id, data)``.
Triage adds an incremental read, a single read, field metadata, bulk updates and private notes.

Field names used across triage: ``group``, ``priority``, ``type``, ``status`` and custom fields by
their API names (``cf_product``). Models and decisions speak *labels* (``"Billing"``, ``"High"``);
:class:`FieldSpec` maps labels to the system's native values (group id, priority 1..4).
"""

from __future__ import annotations

import html
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from triage.adapters.errors import MalformedTicketError, TicketSystemError, UnknownLabelError

FieldKind = Literal["group", "priority", "type", "status", "dropdown"]
OnMalformed = Callable[[MalformedTicketError], None]


class Ticket(BaseModel):
    """A ticket as triage sees it: native values, plain-text description, UTC timestamps."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: int
    subject: str = ""
    description: str = ""
    status: int | None = None
    priority: int | None = None
    group_id: int | None = None
    type: str | None = None
    responder_id: int | None = None
    requester_id: int | None = None
    source: int | None = None
    tags: tuple[str, ...] = ()
    custom_fields: dict[str, Any] = {}
    created_at: datetime
    updated_at: datetime
    spam: bool = False
    deleted: bool = False

    def native(self, field_name: str) -> Any:
        """The native value of a triage field (``group`` gives ``group_id``; ``cf_x`` a custom field)."""
        if field_name == "group":
            return self.group_id
        if field_name in ("priority", "type", "status"):
            return getattr(self, field_name)
        return self.custom_fields.get(field_name)


@dataclass(frozen=True)
class FieldSpec:
    """Metadata of one writable field: its choices (label -> native value) and its default."""

    name: str
    label: str
    kind: FieldKind
    choices: Mapping[str, Any]
    default: str | None = None
    required_for_agents: bool = False
    _by_lower: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_lower", {label.lower(): label for label in self.choices})

    def canonical(self, label: str) -> str:
        """The system's own spelling of ``label`` (matching is case-insensitive and HTML-unescaped)."""
        key = html.unescape(str(label)).strip().lower()
        try:
            return self._by_lower[key]
        except KeyError:
            raise UnknownLabelError(
                f"{self.name}: {label!r} is not one of the ticket system's choices"
            ) from None

    def knows(self, label: str) -> bool:
        return html.unescape(str(label)).strip().lower() in self._by_lower

    def to_native(self, label: str) -> Any:
        """The native value to send for ``label``; raises :class:`UnknownLabelError` if unknown."""
        return self.choices[self.canonical(label)]

    def to_label(self, native: Any) -> str | None:
        """The label of a native value, or ``None`` when unset or unknown."""
        if native is None:
            return None
        for label, value in self.choices.items():
            if value == native or (isinstance(native, str) and str(value).lower() == native.lower()):
                return label
        return None

    def is_empty_or_default(self, native: Any) -> bool:
        """Whether a ticket's current value counts as unset (``None``, blank, or the field's default)."""
        if native is None or native == "":
            return True
        return self.default is not None and self.to_label(native) == self.default


@dataclass(frozen=True)
class BulkUpdateResult:
    """Outcome of one bulk update: the tickets it changed and those it could not, with reasons."""

    job_id: str | None
    succeeded: tuple[int, ...]
    failed: Mapping[int, str]
    request_id: str | None = None
    status_code: int | None = None


class TicketSystemAdapter(ABC):
    """Abstract base of ticket-system adapters (async). Subclasses register an entry point in the
    ``triage.adapters`` group and declare ``config_model``, the pydantic model of their settings."""

    #: Pydantic model validating the adapter's keys under ``ticket_system`` in config.yml.
    config_model: ClassVar[type[BaseModel]]

    @abstractmethod
    def __init__(self, config: BaseModel) -> None:
        """Build the adapter from its settings, an instance of ``config_model`` (how
        :func:`triage.adapters.registry.build_adapter` calls it). Extra parameters must be keyword-only with
        defaults."""

    # -- Open Ticket AI's contract -------------------------------------------------------------

    @abstractmethod
    async def find_tickets(self, query: Mapping[str, Any]) -> list[Ticket]:
        """Tickets matching ``query`` (a mapping of field -> value, or ``{"query": "<native query>"}``)."""

    async def find_first_ticket(self, query: Mapping[str, Any]) -> Ticket | None:
        """The first ticket matching ``query``, or ``None``."""
        tickets = await self.find_tickets(query)
        return tickets[0] if tickets else None

    @abstractmethod
    async def update_ticket(
        self, ticket_id: int, data: Mapping[str, Any], *, current: Ticket | None = None
    ) -> Ticket:
        """Change fields of one ticket; returns the ticket as the system now has it.

        ``data`` maps field names to labels or native values (``{"group": "Billing", "priority":
        "High", "cf_product": "Payments"}``); ``tags`` are merged with the ticket's existing tags.
        ``current`` (triage's addition, optional) is the ticket as the caller last read it: an
        adapter may use it instead of reading the ticket again, and to resend a lost write only
        while the ticket is unchanged since; adapters that need neither ignore it.
        """

    # -- What triage adds ----------------------------------------------------------------------

    def clock_offset(self) -> timedelta:
        """How far the ticket system's clock is ahead of this machine's (negative: behind), as its
        answers show, never more than it is; zero where unknown. A moment of this machine's clock plus
        this is a moment of the ticket system's, as its ``updated_at`` stamps are."""
        return timedelta(0)

    @abstractmethod
    def iter_updated_tickets(
        self,
        since: datetime,
        until: datetime | None = None,
        *,
        on_malformed: OnMalformed | None = None,
    ) -> AsyncIterator[Ticket]:
        """Every non-spam, non-deleted ticket with ``since <= updated_at < until``, in ascending
        ``updated_at`` order, each version ``(id, updated_at)`` exactly once. Without ``until`` the
        read ends about the ticket system's present when it began (so it ends while agents keep
        editing; later versions are the next read's). None is lost to edits made while it reads: a ticket
        edited then comes in its earlier version, its later one, or both.

        A ticket that cannot be parsed is passed to ``on_malformed`` and skipped; without a
        callback it raises :class:`~triage.adapters.errors.MalformedTicketError`.
        """

    @abstractmethod
    async def get_ticket(self, ticket_id: int) -> Ticket:
        """One ticket, spam and deleted ones included (flagged)."""

    @abstractmethod
    async def get_fields(self) -> dict[str, FieldSpec]:
        """Writable field metadata keyed by triage field name (group, priority, type, status, cf_*)."""

    async def bulk_update(self, ticket_ids: Sequence[int], data: Mapping[str, Any]) -> BulkUpdateResult:
        """Apply the same ``data`` to many tickets. The default falls back to one update each."""
        succeeded: list[int] = []
        failed: dict[int, str] = {}
        for ticket_id in ticket_ids:
            try:
                await self.update_ticket(ticket_id, data)
            except TicketSystemError as exc:
                failed[ticket_id] = str(exc)
            else:
                succeeded.append(ticket_id)
        return BulkUpdateResult(job_id=None, succeeded=tuple(succeeded), failed=failed)

    @abstractmethod
    async def add_note(self, ticket_id: int, body: str, *, private: bool = True) -> None:
        """Add a (by default private) note to a ticket."""

    async def wait_for_write_room(self, *, bulk: bool = False) -> None:  # noqa: B027 - optional hook
        """Wait until a re-read and the write after it fit the rate limits back to back."""

    async def has_note(self, ticket_id: int, text: str) -> bool | None:
        """Whether a note on the ticket contains ``text``; ``None`` when the system cannot tell."""
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""

    async def __aenter__(self) -> TicketSystemAdapter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
