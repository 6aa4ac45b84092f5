"""The simulator's ticket state: tickets indexed by ``updated_at``, notes, bulk jobs and the logs."""

from __future__ import annotations

import bisect
import html
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from triage.simulator.account import Account
from triage.simulator.tickets import StoredTicket
from triage.simulator.timeutil import format_ts

ChangeSource = Literal["api", "bulk", "agent", "requester", "note"]
_TAG = re.compile(r"<[^>]+>")


class Clock:
    """Wall-clock epoch seconds, ``offset`` seconds ahead of this machine (negative: behind)."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def time(self) -> float:
        return time.time() + self.offset

    def now(self) -> int:
        return int(self.time())

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass(frozen=True)
class WriteRecord:
    """One write request as received (``PUT``/``POST``/``DELETE`` under ``/api/v2``)."""

    time: str
    method: str
    path: str
    query: str
    body: Any
    status: int
    request_id: str
    dropped: bool = False

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class ChangeRecord:
    """One effective change to a ticket: who made it (``source``; ``actor``: the agent's or the
    requester's id where a person did) and each field's old and new value."""

    time: str
    ticket_id: int
    source: ChangeSource
    changes: dict[str, tuple[Any, Any]]
    request_id: str | None = None
    job_id: str | None = None
    actor: int | None = None

    def to_json(self) -> dict[str, Any]:
        out = dict(vars(self))
        out["changes"] = {k: {"old": old, "new": new} for k, (old, new) in self.changes.items()}
        return out


@dataclass
class Job:
    """A bulk update waiting to be applied (``ready_at``: epoch seconds, fractional)."""

    id: str
    ids: list[int]
    properties: dict[str, Any]
    reply: dict[str, Any] | None
    ready_at: float
    status: str = "IN PROGRESS"
    results: list[dict[str, Any]] = field(default_factory=list)
    request_id: str | None = None


_TRACKED = (
    "subject",
    "description_text",
    "status",
    "priority",
    "group_id",
    "type",
    "responder_id",
    "requester_id",
    "company_id",
    "source",
    "due_by",
    "fr_due_by",
    "spam",
    "deleted",
)


class TicketStore:
    """All tickets plus a sorted ``(updated_at, id)`` index and a cache of list orderings.

    Not thread-safe by itself: :class:`~triage.simulator.simulator.Simulator` serialises access.
    """

    def __init__(self, account: Account, tickets: Iterable[StoredTicket], clock: Clock) -> None:
        self.account = account
        self.clock = clock
        self.tickets: dict[int, StoredTicket] = {t.id: t for t in tickets}
        self._index = sorted((t.updated_at, t.id) for t in self.tickets.values())
        self.version = 0
        self._cache: OrderedDict[tuple, list[int]] = OrderedDict()
        self.notes: dict[int, list[dict[str, Any]]] = {}
        self.jobs: dict[str, Job] = {}
        self.writes: list[WriteRecord] = []
        self.changes: list[ChangeRecord] = []
        self._next_note_id = 67105086000

    # -- reading ---------------------------------------------------------------------------------

    def get(self, ticket_id: int) -> StoredTicket | None:
        return self.tickets.get(ticket_id)

    def updated_since(self, since: int) -> list[int]:
        """Ids with ``updated_at >= since`` in ascending ``(updated_at, id)`` order."""
        start = bisect.bisect_left(self._index, (since, -1))
        return [tid for _, tid in self._index[start:]]

    def all_by_updated(self) -> list[int]:
        return [tid for _, tid in self._index]

    def cached(self, key: tuple, compute: Callable[[], list[int]]) -> list[int]:
        """``compute()`` memoised per store version, so paging through one listing sorts once."""
        full_key = (self.version, *key)
        hit = self._cache.get(full_key)
        if hit is None:
            hit = compute()
            self._cache[full_key] = hit
            while len(self._cache) > 16:
                self._cache.popitem(last=False)
        return hit

    # -- writing ---------------------------------------------------------------------------------

    def add(self, ticket: StoredTicket) -> None:
        self.tickets[ticket.id] = ticket
        bisect.insort(self._index, (ticket.updated_at, ticket.id))
        self.version += 1

    def next_ticket_id(self) -> int:
        return max(self.tickets, default=0) + 1

    def apply(
        self,
        ticket: StoredTicket,
        values: dict[str, Any],
        *,
        source: ChangeSource,
        request_id: str | None = None,
        job_id: str | None = None,
        append_tags: bool = False,
        actor: int | None = None,
    ) -> dict[str, tuple[Any, Any]]:
        """Set ``values`` (native names; ``custom_fields`` merged; ``tags`` replaced or appended).

        Only real changes count: when nothing differs, ``updated_at`` stays as it is (Rails skips
        unchanged saves). Otherwise ``updated_at`` moves to now, and always past its old value so
        every change is visible to an ``updated_at`` comparison. Returns ``{field: (old, new)}``.
        """
        diff: dict[str, tuple[Any, Any]] = {}
        for name, new in values.items():
            if name == "custom_fields":
                for key, value in new.items():
                    old = ticket.custom_fields.get(key)
                    if old != value:
                        diff[f"custom_fields.{key}"] = (old, value)
                        ticket.custom_fields[key] = value
            elif name == "tags":
                old_tags = list(ticket.tags)
                if append_tags:
                    known = {t.lower() for t in old_tags}
                    merged = old_tags + [t for t in new if t.lower() not in known]
                else:
                    merged = list(new)
                if merged != old_tags:
                    diff["tags"] = (old_tags, merged)
                    ticket.tags = merged
            elif name in _TRACKED:
                old = getattr(ticket, name)
                if old != new:
                    diff[name] = (old, new)
                    setattr(ticket, name, new)
            else:
                raise KeyError(f"not a stored ticket field: {name}")
        if diff:
            now = self.clock.now()
            if "status" in diff:
                ticket.status_updated_at = now
                if ticket.status == 4:
                    ticket.resolved_at = now
                elif ticket.status == 5:
                    ticket.closed_at = now
            self.touch(ticket, now)
            stamp = format_ts(ticket.updated_at) or ""
            self.changes.append(ChangeRecord(stamp, ticket.id, source, diff, request_id, job_id, actor))
        return diff

    def touch(self, ticket: StoredTicket, at: int) -> None:
        """Move ``updated_at`` to ``at`` (at least one second past its old value) and reindex."""
        new = max(at, ticket.updated_at + 1)
        position = bisect.bisect_left(self._index, (ticket.updated_at, ticket.id))
        del self._index[position]
        ticket.updated_at = new
        bisect.insort(self._index, (new, ticket.id))
        self.version += 1

    def add_note(
        self,
        ticket: StoredTicket,
        body: str,
        *,
        private: bool,
        user_id: int,
        incoming: bool = False,
        source: int = 2,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """A note (``source`` 2) or reply (0); the ticket's ``updated_at`` becomes the note's time."""
        now = self.clock.now()
        self.touch(ticket, now)
        stamp = format_ts(ticket.updated_at)
        self._next_note_id += 1
        note = {
            "body": body,
            "body_text": _strip_tags(body),
            "id": self._next_note_id,
            "incoming": incoming,
            "private": private,
            "user_id": user_id,
            "support_email": None,
            "source": source,
            "category": 2 if source == 2 else 3,
            "to_emails": [],
            "from_email": None,
            "cc_emails": [],
            "bcc_emails": None,
            "created_at": stamp,
            "updated_at": stamp,
            "last_edited_at": None,
            "last_edited_user_id": None,
            "attachments": [],
            "ticket_id": ticket.id,
            "source_additional_info": None,
        }
        self.notes.setdefault(ticket.id, []).append(note)
        kind = "note" if source == 2 else "reply"
        self.changes.append(
            ChangeRecord(stamp, ticket.id, "note", {kind: (None, note["body_text"])}, request_id)
        )
        return note


def _strip_tags(body: str) -> str:
    return html.unescape(_TAG.sub("", body)).strip()
