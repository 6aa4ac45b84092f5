"""Settling what earlier requests left uncertain, by re-reading instead of resending.

- :func:`resolve_open`: intents without a result (a crash, or an answer lost) become ``ok`` (the
  re-read shows the value, or the note by its reference), ``not_applied`` (it does not), or wait
  while a bulk job may still run;
- :func:`owed_changes`: writes earlier pushes still owe, with the snapshots they were decided on;
- :func:`after_lost` and :func:`found_written`: what a request whose answer was lost did after all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from triage.adapters.base import Ticket
from triage.adapters.errors import TicketSystemError
from triage.lake.runs import utcnow
from triage.models.tags import TAGS
from triage.tasks.audit import change_key
from triage.tasks.push_plan import Change, Request, Skip, carries, note_reference
from triage.tasks.push_state import (
    PushState,
    Rows,
    audit_row,
    change_of,
    changed_since,
    confirmed_row,
    result_rows,
    skip_row,
)
from triage.tasks.snapshots import snapshots_at


async def resolve_open(state: PushState, dangling: Rows, fresh: Mapping[int, Ticket]) -> tuple[set[int], int]:
    """Result rows for intents left open; returns the tickets still pending and how many resolved."""
    now = utcnow()
    settle = timedelta(seconds=state.settings.pipeline.bulk_settle_seconds)
    pending: set[int] = set()
    rows: Rows = []
    notes: dict[str, Rows] = defaultdict(list)
    for intent in dangling:
        base = replace(intent, run_id=state.ctx.run_id, phase="result", completed_at=now)
        if intent.method == "note":
            notes[intent.write_id].append(base)
            continue
        ticket = fresh.get(intent.ticket_id)
        spec = state.specs.get(intent.field)
        if ticket is not None and carries(ticket, intent.field, intent.label, spec):
            rows.append(confirmed_row(base, ticket))
        elif intent.method == "bulk_update" and intent.sent_at and now - intent.sent_at < settle:
            pending.add(intent.ticket_id)  # its job may still be running: decide next time
        else:
            rows.append(replace(base, status="not_applied", reason_code="not_found_on_reread"))
    for note in notes.values():
        reference = note_reference(change_of(r) for r in note)
        try:
            found = await state.adapter.has_note(note[0].ticket_id, reference)
        except TicketSystemError as exc:
            if exc.transient:
                raise
            found = False  # the ticket is gone or out of reach: no note there; a resend says why
        status, reason_code = {
            True: ("ok", "confirmed_on_reread"),
            False: ("not_applied", "not_found_on_reread"),
            None: ("unknown", "note_unverifiable"),
        }[found]
        rows.extend(replace(r, status=status, reason_code=reason_code) for r in note)
    if rows:
        state.record(rows)
    return pending, len(rows)


def owed_changes(state: PushState, changes: list[Change], owed: Rows) -> list[Change]:
    """Changes earlier pushes still owe, with their snapshots; those a newer decision replaces are
    audited ``superseded``, those whose snapshot is gone ``unreadable``."""
    decided = {c.ticket_id for c in changes}
    keys = {change_key(c.ticket_id, c.field, c.label, state.method) for c in changes}
    carried: list[Change] = []
    dropped: list[Skip] = []
    for row in owed:
        change = change_of(row)
        if change_key(change.ticket_id, change.field, change.label, state.method) in keys:
            continue  # this run decided the same change
        if change.ticket_id in decided:
            dropped.append(Skip(change, "superseded", "a newer decision on this ticket replaces it"))
        else:
            carried.append(change)
    found = snapshots_at(state.lake, {(c.ticket_id, c.snapshot_updated_at) for c in carried})
    usable = [c for c in carried if (c.ticket_id, c.snapshot_updated_at) in found]
    dropped += [
        Skip(c, "unreadable", "the snapshot it was decided on is not in the lake")
        for c in carried
        if c not in usable
    ]
    for change in sorted(usable, key=lambda c: c.snapshot_updated_at):
        state.snapshots[change.ticket_id] = found[(change.ticket_id, change.snapshot_updated_at)]
    if dropped:
        state.record([skip_row(state.ctx, s, state.method) for s in dropped])
    return usable


async def after_lost(state: PushState, request: Request, write_id: str, sent_at: datetime) -> Rows:
    """Results for a request that failed with its outcome unknown: what a re-read shows written (a
    bulk update's values, a note by its reference) is ``ok``; the rest stays open for the next push
    to resolve (a bulk job may still run). Single updates were re-read by the adapter."""
    try:
        if request.method == "note":
            found = await state.adapter.has_note(request.ticket_ids[0], note_reference(request.changes))
            return (
                result_rows(state, request, write_id, sent_at, "ok", reason_code="confirmed_on_reread")
                if found
                else []
            )
        if request.method != "bulk_update":
            return []
        fresh, _ = await changed_since(state, sent_at - state.slack)
    except TicketSystemError:
        return []  # the re-read fails too: the next push resolves the intents
    return found_written(state, request, write_id, sent_at, request.changes, fresh)


def found_written(
    state: PushState,
    request: Request,
    write_id: str,
    sent_at: datetime,
    changes: Iterable[Change],
    fresh: Mapping[int, Ticket],
) -> Rows:
    """``ok`` rows (``confirmed_on_reread``) for the ``changes`` a re-read shows carried out."""
    now = utcnow()
    rows = []
    for change in changes:
        ticket = fresh.get(change.ticket_id)
        spec = state.specs.get(change.field)
        if (
            ticket is not None
            and (spec is not None or change.field == TAGS)
            and carries(ticket, change.field, change.label, spec)
        ):
            base = audit_row(state.ctx, request, change, write_id, "result", "ok", sent_at, completed_at=now)
            rows.append(confirmed_row(base, ticket))
    return rows
