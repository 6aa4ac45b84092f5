"""Write safety judged from the simulator's own logs: writes triage lost, doubled or overwrote.

The simulator logs every change to a ticket with its source (``api``, ``bulk``, ``agent``,
``requester``, ``note``), every write request with its status, every bulk job and every note. These
judges read only those logs, never triage's lake, so they check triage from the outside; the tests
and the soak benchmark share them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from triage.simulator.simulator import Simulator

#: Triage's field name -> the ticket's native field.
NATIVE = {"group": "group_id", "priority": "priority", "type": "type"}
#: Freshdesk's default of a triaged field (native), which every new ticket has.
DEFAULTS = {"priority": 1}
#: One suggestion in a note triage wrote (``tasks/push_plan.py`` renders them): field and label.
NOTE_ITEM = re.compile(r"<li>([^<:]+): <b>([^<]+)</b>")

Wanted = dict[tuple[int, str], Any]


def native_value(sim: Simulator, field: str, label: str) -> Any:
    """The native value of ``label`` in triage field ``field``, as the simulator's account spells it."""
    if field == "group":
        return sim.store.account.group_id(label)
    if field == "priority":
        return sim.labels()["priority"].index(label) + 1
    return label


def judge(sim: Simulator, wanted: Wanted) -> dict[str, list[tuple]]:
    """``{"lost": [...], "doubled": [...], "overwritten": [...]}``, each empty when all is well.

    ``wanted`` maps (ticket id, triage field) to the native value triage should have written.
    """
    return {"lost": lost(sim, wanted), "doubled": doubled(sim), "overwritten": overwritten(sim)}


def people_edits(sim: Simulator) -> dict[tuple[int, str], int]:
    """(ticket, native field) -> index in ``sim.changes`` of the last change a person (an agent or the
    requester) made to it."""
    people: dict[tuple[int, str], int] = {}
    for index, change in enumerate(sim.changes):
        if change.source in ("agent", "requester"):
            for name in change.changes:
                people[(change.ticket_id, name)] = index
    return people


def doubled(sim: Simulator) -> list[tuple]:
    """Writes made twice: a field our writes changed twice, the same value to the same field in two
    requests the helpdesk acted on (PUTs, their answers lost included, and bulk jobs), the same
    suggestion in two notes."""
    changes = sim.changes
    out: list[tuple] = []
    ours: set[tuple[int, str]] = set()
    acted_ids = {c.request_id for c in changes if c.source == "api" and c.request_id}
    for change in changes:
        if change.source in ("api", "bulk"):
            for name in change.changes:
                key = (change.ticket_id, name)
                if name != "tags" and key in ours:
                    out.append(("changed twice", *key))
                ours.add(key)
    sent: dict[tuple[int, str, str], int] = {}
    for write in sim.writes:
        if write.method == "PUT" and (200 <= write.status < 300 or write.request_id in acted_ids):
            ticket_id = int(write.path.rsplit("/", 1)[1])
            for name, value in (write.body or {}).items():
                if name != "tags":
                    value_key = (ticket_id, name, repr(value))
                    sent[value_key] = sent.get(value_key, 0) + 1
    for job in sim.store.jobs.values():
        for ticket_id in job.ids:
            for name, value in job.properties.items():
                if name != "tags":
                    value_key = (ticket_id, name, repr(value))
                    sent[value_key] = sent.get(value_key, 0) + 1
    out += [("sent twice", *value_key) for value_key, n in sent.items() if n > 1]
    suggested: dict[tuple, int] = {}
    for ticket_id, notes in sim.store.notes.items():
        for note in notes:
            for item in NOTE_ITEM.findall(note["body"]):
                suggested[(ticket_id, *item)] = suggested.get((ticket_id, *item), 0) + 1
    return out + [("suggested twice", *key) for key, n in suggested.items() if n > 1]


def overwritten(sim: Simulator) -> list[tuple]:
    """Our writes replacing a value a person set (an empty field is unset, whoever emptied it), and our
    tag lists dropping a tag."""
    people, changes = people_edits(sim), sim.changes
    out: list[tuple] = []
    for index, change in enumerate(changes):
        if change.source not in ("api", "bulk"):
            continue
        for name, (old, new) in change.changes.items():
            if name == "tags":
                if set(old or []) - set(new or []):
                    out.append((change.ticket_id, "tags", sorted(set(old) - set(new))))
            elif people.get((change.ticket_id, name), len(changes)) < index and old not in (None, ""):
                out.append((change.ticket_id, name, old, new))
    return out


def lost(sim: Simulator, wanted: Wanted) -> list[tuple]:
    """Wanted values missing from their tickets, unless a person changed the field since, the ticket is
    gone, or it is a default left on a ticket an agent or note changed (push leaves that alone: it may
    be the agent's choice)."""
    people = people_edits(sim)
    touched = {c.ticket_id for c in sim.changes if c.source in ("agent", "note")}
    out = []
    for (ticket_id, field), value in wanted.items():
        ticket = sim.ticket(ticket_id)
        if ticket["spam"] or ticket.get("deleted"):
            continue
        native = NATIVE[field]
        if ticket[native] == value or (ticket_id, native) in people:
            continue
        if ticket_id in touched and ticket[native] == DEFAULTS.get(field):
            continue
        out.append((ticket_id, field, value, ticket[native]))
    return out
