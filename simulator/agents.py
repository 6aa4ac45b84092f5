"""Agents at work: the edits agents make in the UI to unresolved tickets, and a thread making them.

An edit changes one field of a random unresolved ticket (not spam, not deleted): its group, its
priority (half the time a deliberate Low where it is not Low yet), its type, its tags (one added or
removed) or its status (among the unresolved ones). The agent is one of the ticket's group.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from triage.simulator.account import PRIORITIES, Account
from triage.simulator.config import MAX_EDITS_PER_MINUTE
from triage.simulator.store import TicketStore
from triage.simulator.tickets import StoredTicket

#: Open, Pending, Waiting on Customer, Waiting on Third Party.
UNRESOLVED = (2, 3, 6, 7)
AGENT_TAGS = ("vip", "callback", "follow-up", "escalated", "waiting-on-dev")
LOW = PRIORITIES["Low"]
_FIELDS = ("group", "priority", "type", "tags", "status")
_FIELD_WEIGHTS = (0.25, 0.25, 0.2, 0.2, 0.1)
#: Random draws before :func:`pick_unresolved` falls back to scanning every ticket.
_DRAWS = 200
#: After a stall (a busy machine), at most this many overdue edits are made at once.
MAX_BURST = 100

T = TypeVar("T")


def is_unresolved(ticket: StoredTicket) -> bool:
    return ticket.status in UNRESOLVED and not (ticket.spam or ticket.deleted)


def pick_unresolved(store: TicketStore, rng: random.Random) -> StoredTicket | None:
    """A random unresolved ticket, or ``None`` when there is none."""
    top = store.next_ticket_id()
    for _ in range(_DRAWS):
        ticket = store.tickets.get(rng.randrange(1, top))
        if ticket is not None and is_unresolved(ticket):
            return ticket
    candidates = [ticket for ticket in store.tickets.values() if is_unresolved(ticket)]
    return rng.choice(candidates) if candidates else None


def agent_of(account: Account, group_id: int | None, rng: random.Random) -> int:
    """An agent of ``group_id`` (any agent but the API's own when the ticket has no group)."""
    staff = [a.id for a in account.agents.values() if a.id != account.me]
    members = [aid for aid in staff if group_id in account.agents[aid].group_ids]
    return rng.choice(members or staff)


def random_edit(ticket: StoredTicket, account: Account, rng: random.Random) -> tuple[dict[str, Any], int]:
    """One agent's change to ``ticket`` as native values, and that agent's id."""
    field = rng.choices(_FIELDS, _FIELD_WEIGHTS)[0]
    if field == "group":
        group_id = _other(list(account.groups), ticket.group_id, rng)
        return {"group_id": group_id}, agent_of(account, group_id, rng)
    actor = agent_of(account, ticket.group_id, rng)
    if field == "priority":
        deliberate_low = ticket.priority != LOW and rng.random() < 0.5
        return {
            "priority": LOW if deliberate_low else _other(list(PRIORITIES.values()), ticket.priority, rng)
        }, actor
    if field == "type":
        return {"type": _other(account.ticket_types, ticket.type, rng)}, actor
    if field == "tags":
        absent = [tag for tag in AGENT_TAGS if tag not in ticket.tags]
        if ticket.tags and (not absent or rng.random() < 0.3):
            dropped = rng.choice(ticket.tags)
            return {"tags": [tag for tag in ticket.tags if tag != dropped]}, actor
        return {"tags": [*ticket.tags, rng.choice(absent)]}, actor
    return {"status": _other(UNRESOLVED, ticket.status, rng)}, actor


def _other(options: Sequence[T], current: object, rng: random.Random) -> T:
    """A random option other than ``current`` (``current`` itself when it is the only one)."""
    return rng.choice([option for option in options if option != current] or list(options))


class AgentLoop:
    """Calls ``edit`` at a steady rate on a daemon thread until :meth:`stop`."""

    def __init__(self, edit: Callable[[], object]) -> None:
        self._edit = edit
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.per_minute = 0.0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, per_minute: float) -> None:
        """(Re)start at ``per_minute`` edits a minute; 0 stops."""
        if not 0 <= per_minute <= MAX_EDITS_PER_MINUTE:
            raise ValueError(f"edits_per_minute must be within 0..{MAX_EDITS_PER_MINUTE}")
        self.stop()
        if per_minute == 0:
            return
        self.per_minute = per_minute
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(60.0 / per_minute, self._stop), name="simulator-agents", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(10)
            self._thread = None
        self.per_minute = 0.0

    def _run(self, interval: float, stop: threading.Event) -> None:
        started = time.monotonic()
        done = 0
        while not stop.wait(max(0.0, started + (done + 1) * interval - time.monotonic())):
            due = int((time.monotonic() - started) / interval)
            for _ in range(min(due - done, MAX_BURST)):
                self._edit()
            done = due
