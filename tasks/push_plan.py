"""Push planning, as pure functions: which changes still go out, and as which requests.

- :func:`recheck` drops changes already made (the audit trail), and skips fields that changed since
  the snapshot (an agent set them: never overridden), values already there, tickets gone, and
  writes whose required fields are no longer satisfied.
- :func:`plan_writes` puts each ticket's fields in one request and groups tickets with identical
  changes into bulk updates (at most 100 ids each); the rest are single updates.
- Tags (field ``tags``, one change per tag) are only ever added: a request's ``tags`` are the tags to
  add (with the triaged tag), which the adapter merges into the ticket's current tags (a single update
  re-reads them right before writing; a bulk update appends). A tag the ticket has is not written
  again (``already_set``); a tag triage added before and that is gone now was removed by someone and
  is left alone (``agent_changed``).
- :func:`plan_notes` makes one private note per ticket listing its suggestions, with a reference
  (:func:`note_reference`) that finds the note again in the ticket's conversations.
"""

from __future__ import annotations

import hashlib
import html
from collections import defaultdict
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from triage.adapters.base import FieldSpec, Ticket
from triage.models.tags import TAGS
from triage.settings import FieldRule
from triage.tasks.audit import ChangeKey, change_key

Method = Literal["update", "bulk_update", "note"]
BULK_MAX_IDS = 100


@dataclass(frozen=True)
class Change:
    """One decided field value to write (or suggest) on one ticket."""

    ticket_id: int
    field: str
    label: str
    probability: float | None
    decision_run_id: str
    model_version: str | None
    snapshot_updated_at: datetime


@dataclass(frozen=True)
class Skip:
    """A change not sent, and why (an audit row with status ``skipped``)."""

    change: Change
    reason_code: str
    message: str


@dataclass(frozen=True)
class Request:
    """One request to the ticket system and the changes it carries."""

    method: Method
    ticket_ids: tuple[int, ...]
    data: dict[str, Any]
    changes: tuple[Change, ...] = field(repr=False)


def recheck(
    changes: list[Change],
    *,
    method: Method,
    done: set[ChangeKey],
    pending: set[int],
    snapshots: Mapping[int, Ticket],
    unreadable: AbstractSet[int] = frozenset(),
    fresh: Mapping[int, Ticket],
    specs: Mapping[str, FieldSpec],
    rules: Mapping[str, FieldRule],
) -> tuple[list[Change], list[Skip]]:
    """The changes still to send, and those skipped with a reason.

    ``fresh`` holds the tickets re-read since the snapshot (a ticket absent from it has not changed);
    ``pending`` the tickets with an unresolved earlier write that must not be written again yet;
    ``unreadable`` those the re-read could not parse (their state is unknown: not written).
    """
    kept: list[Change] = []
    skipped: list[Skip] = []
    for change in changes:
        snapshot = snapshots[change.ticket_id]
        now = fresh.get(change.ticket_id, snapshot)
        if change_key(change.ticket_id, change.field, change.label, method) in done:
            if change.field == TAGS and method != "note" and not carries(now, TAGS, change.label, None):
                why = f"tag {change.label!r} was added by triage before and removed since: left alone"
                skipped.append(Skip(change, "agent_changed", why))
            continue  # made by an earlier attempt: the audit already says so
        spec = specs.get(change.field)
        reason = _changed(change, snapshot, now, spec, pending, unreadable)
        if reason:
            skipped.append(Skip(change, *reason))
        else:
            kept.append(change)
    if method == "note":
        return kept, skipped
    return _requirements(kept, skipped, snapshots, fresh, specs, rules)


def _changed(
    change: Change,
    snapshot: Ticket,
    now: Ticket,
    spec: FieldSpec | None,
    pending: set[int],
    unreadable: AbstractSet[int],
) -> tuple[str, str] | None:
    if change.ticket_id in pending:
        return "unresolved_write", "an earlier write to this ticket is not resolved yet"
    if change.ticket_id in unreadable:
        return "unreadable", "the ticket could not be re-read, so its current values are unknown"
    if now.spam or now.deleted:
        return "gone", "the ticket became spam or was deleted"
    if change.field == TAGS:  # tags are merged in: only one the ticket has now is not written
        if carries(now, TAGS, change.label, None):
            return "already_set", f"the ticket already has tag {change.label!r}"
        return None
    before, after = snapshot.native(change.field), now.native(change.field)
    label_now = spec.to_label(after) if spec else after
    if label_now == change.label:
        return "already_set", f"the ticket already has {change.field} {change.label!r}"
    if after != before:
        shown = label_now if label_now is not None else after
        return "agent_changed", f"{change.field} changed to {shown!r} since the snapshot: left alone"
    if (
        now.updated_at != snapshot.updated_at
        and after not in (None, "")
        and spec
        and spec.is_empty_or_default(after)
    ):
        # Changed away and back (an agent's deliberate Low) looks the same: once the ticket changed
        # since the snapshot, its default may be someone's choice, as it is for decide.
        return (
            "agent_changed",
            f"{change.field} is {label_now!r}, and the ticket changed since the snapshot: left alone",
        )
    return None


def carries(ticket: Ticket, field_name: str, label: str | None, spec: FieldSpec | None) -> bool:
    """Whether ``ticket`` has ``label`` in ``field_name`` (a tag: among its tags, ignoring case)."""
    if field_name == TAGS:
        return label is not None and label.lower() in {t.lower() for t in ticket.tags}
    value = ticket.native(field_name)
    return (spec.to_label(value) if spec else value) == label


def _requirements(
    kept: list[Change],
    skipped: list[Skip],
    snapshots: Mapping[int, Ticket],
    fresh: Mapping[int, Ticket],
    specs: Mapping[str, FieldSpec],
    rules: Mapping[str, FieldRule],
) -> tuple[list[Change], list[Skip]]:
    """Drop writes whose required field is neither written now nor set on the ticket."""
    changed = True
    while changed:
        changed = False
        fields_by_ticket: dict[int, set[str]] = defaultdict(set)
        for c in kept:
            fields_by_ticket[c.ticket_id].add(c.field)
        for c in list(kept):
            ticket = fresh.get(c.ticket_id, snapshots[c.ticket_id])
            rule = rules.get(c.field)
            for other in rule.requires if rule else ():
                if other in fields_by_ticket[c.ticket_id] or _is_set(ticket, other, specs.get(other)):
                    continue
                kept.remove(c)
                skipped.append(Skip(c, "requires_unmet", f"{c.field} requires {other}, which is not written"))
                changed = True
                break
    return kept, skipped


def _is_set(ticket: Ticket, name: str, spec: FieldSpec | None) -> bool:
    value = ticket.native(name)
    if value is None or value == "":
        return False
    return spec is None or not spec.is_empty_or_default(value)


def plan_writes(
    changes: list[Change], *, tag: str | None, bulk: bool, bulk_min_tickets: int
) -> list[Request]:
    """Requests writing ``changes``: one per ticket, tickets with identical changes grouped in bulk."""
    per_ticket: dict[int, list[Change]] = defaultdict(list)
    for c in changes:
        per_ticket[c.ticket_id].append(c)
    groups: dict[tuple[tuple[str, str], ...], list[int]] = defaultdict(list)
    for ticket_id, items in per_ticket.items():
        groups[tuple(sorted((c.field, c.label) for c in items))].append(ticket_id)
    requests: list[Request] = []
    for key, ticket_ids in groups.items():
        data: dict[str, Any] = {name: label for name, label in key if name != TAGS}
        added = [label for name, label in key if name == TAGS]
        if tag or added:
            data[TAGS] = list(dict.fromkeys([*([tag] if tag else []), *added]))
        if bulk and len(ticket_ids) >= bulk_min_tickets:
            for start in range(0, len(ticket_ids), BULK_MAX_IDS):
                chunk = tuple(ticket_ids[start : start + BULK_MAX_IDS])
                carried = tuple(c for t in chunk for c in per_ticket[t])
                requests.append(Request("bulk_update", chunk, data, carried))
        else:
            requests.extend(Request("update", (t,), data, tuple(per_ticket[t])) for t in ticket_ids)
    return requests


def plan_notes(changes: list[Change], *, specs: Mapping[str, FieldSpec]) -> list[Request]:
    """One private note per ticket listing the suggested values with their confidence."""
    per_ticket: dict[int, list[Change]] = defaultdict(list)
    for c in changes:
        per_ticket[c.ticket_id].append(c)
    return [
        Request("note", (ticket_id,), {"body": note_body(items, specs)}, tuple(items))
        for ticket_id, items in per_ticket.items()
    ]


def note_body(changes: list[Change], specs: Mapping[str, FieldSpec]) -> str:
    """The HTML of a suggestion note."""
    items = []
    for c in changes:
        name = specs[c.field].label if c.field in specs else c.field
        confidence = f" ({c.probability:.0%} confident)" if c.probability is not None else ""
        items.append(f"<li>{html.escape(name)}: <b>{html.escape(c.label)}</b>{confidence}</li>")
    version = next((c.model_version for c in changes if c.model_version), "unknown")
    return (
        "<p>AI triage suggestions (nothing was changed):</p>"
        f"<ul>{''.join(items)}</ul><p>Model version {html.escape(version)}. "
        f"Reference {note_reference(changes)}.</p>"
    )


def note_reference(changes: Iterable[Change]) -> str:
    """A reference naming one suggestion note, computed from what the audit trail keeps of it."""
    key = sorted(f"{c.ticket_id}:{c.decision_run_id}:{c.field}={c.label}" for c in changes)
    return "triage-" + hashlib.sha256("\n".join(key).encode()).hexdigest()[:16]
