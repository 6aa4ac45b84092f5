"""Open tickets that are not all defaults: values their requester chose and an agent's first edits.

A requester may pick a priority above Low and a type on the portal form (when the ticket is
created). An agent may then have assigned the ticket's group, lowered the priority to Low on
purpose, set its type or tagged it (at a random moment between creation and now). Each step is a
:class:`~triage.simulator.store.ChangeRecord` with its source and the person's id.
"""

from __future__ import annotations

import random
from typing import Any

from triage.simulator.account import Account
from triage.simulator.agents import AGENT_TAGS, LOW, agent_of
from triage.simulator.generator import LabelledText
from triage.simulator.store import ChangeRecord, ChangeSource
from triage.simulator.tickets import StoredTicket
from triage.simulator.timeutil import format_ts

REQUESTER_PRIORITIES = (2, 3, 4)


def preset_open_ticket(
    ticket: StoredTicket, text: LabelledText, account: Account, rng: random.Random, now: int
) -> list[ChangeRecord]:
    """Set what the requester and an agent set on ``ticket`` before triage; returns their changes."""
    records: list[ChangeRecord] = []
    chosen: dict[str, Any] = {}
    if rng.random() < 0.6:
        chosen["priority"] = rng.choice(REQUESTER_PRIORITIES)
    if rng.random() < 0.4:
        chosen["type"] = rng.choice(account.ticket_types)
    if chosen:
        records.append(_set(ticket, chosen, ticket.created_at, "requester", ticket.requester_id))
    if rng.random() < 0.6:
        group_id = account.group_id(text.group)
        edit: dict[str, Any] = {"group_id": group_id}
        if ticket.priority != LOW and rng.random() < 0.7:
            edit["priority"] = LOW  # the agent judged it less urgent than the requester did
        if rng.random() < 0.4:
            edit["type"] = text.type
        if rng.random() < 0.4:
            edit["tags"] = [rng.choice(AGENT_TAGS)]
        at = rng.randint(ticket.created_at + 1, max(ticket.created_at + 1, now - 1))
        records.append(_set(ticket, edit, at, "agent", agent_of(account, group_id, rng)))
        ticket.updated_at = at
    return [record for record in records if record.changes]


def _set(
    ticket: StoredTicket, values: dict[str, Any], at: int, source: ChangeSource, actor: int
) -> ChangeRecord:
    changes: dict[str, tuple[Any, Any]] = {}
    for name, new in values.items():
        old = getattr(ticket, name)
        if old != new:
            changes[name] = (old, new)
            setattr(ticket, name, new)
    return ChangeRecord(format_ts(at) or "", ticket.id, source, changes, actor=actor)
