"""Push: carry out a run's decisions in the ticket system, with an audit row for every attempt.

Order of work, each step safe to repeat:

1. Re-read the tickets changed since the extract (one incremental read, not one call per ticket).
2. Resolve intents left without a result (a crash, or an answer lost) from that re-read: a ticket
   carrying the value was written (``ok``), one without it was not (``not_applied``); a note is
   looked up in the ticket's conversations. A bulk write younger than
   ``pipeline.bulk_settle_seconds`` may still be running: its ticket waits.
3. Shadow mode stops here: nothing is sent.
4. The changes to make: this run's decisions plus those earlier pushes still owe (latest result
   ``not_applied``), re-checked (:func:`tasks.push_plan.recheck`) and planned as requests.
5. Per batch: ``intent`` rows; then each request re-reads its tickets right before it is sent (a
   single update reads its ticket; a bulk update the tickets changed since the last read), is
   re-checked against them, sent, and gets ``result`` rows. A transient or authentication failure
   stops the stage after recording what is known: a bulk request whose answer was lost is re-read,
   the batch's unsent requests are ``not_applied`` (``not_sent``); the retry or the next run sends
   what is owed. Suggestion notes re-read between batches every ``pipeline.push_reread_seconds``.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from adapters.base import FieldSpec, Ticket, TicketSystemAdapter
from adapters.errors import AuthenticationError, MalformedTicketError, TicketSystemError, is_transient
from tasks.audit import KIND, change_key, dangling_intents, done_changes, owed_results, write_audit
from tasks.context import StageContext
from tasks.manifest import DecideManifest, ExtractManifest, PushManifest, add_count
from tasks.push_plan import (
    Change,
    Method,
    Request,
    Skip,
    note_reference,
    plan_notes,
    plan_writes,
    recheck,
)
from tasks.runlog import recorded
from tasks.snapshots import latest_snapshots, quarantine_row, row_ticket, snapshots_at
from triage.lake import Lake
from triage.lake.runs import utcnow
from triage.redaction import redact
from triage.settings import Settings

#: Single updates and notes are recorded in batches of this many requests (one intent and one
#: result part each); a bulk update is its own batch.
SINGLE_BATCH = 25

Rows = list[dict[str, Any]]


@dataclass
class _Push:
    """State of one push stage."""

    ctx: StageContext
    settings: Settings
    lake: Lake
    adapter: TicketSystemAdapter
    specs: Mapping[str, FieldSpec]
    paths: list[str]
    counts: dict[str, dict[str, int]]
    method: Method = "update"
    rows: int = 0
    sent: int = 0
    #: The tickets as decided on: this run's snapshots, and those of the writes it still owes.
    snapshots: dict[int, Ticket] = field(default_factory=dict)
    #: The tickets as last seen: the snapshot, or the latest re-read where they changed since.
    current: dict[int, Ticket] = field(default_factory=dict)
    #: When the last incremental re-read started (the next one reads changes since then).
    read_at: datetime | None = None

    @property
    def slack(self) -> timedelta:
        """Clock slack for incremental re-reads (``updated_since`` is to the second)."""
        return timedelta(seconds=self.settings.pipeline.own_write_tolerance_seconds)

    def record(self, rows: Rows) -> None:
        part = write_audit(self.lake, rows, run_id=self.ctx.run_id, partition=self.ctx.partition)
        if part:
            self.paths.append(part.path)
            self.rows += part.rows
        for row in rows:
            if row["phase"] == "result":
                add_count(self.counts, row["field"], row["status"])

    def check(
        self, changes: list[Change], unreadable: set[int] = frozenset()
    ) -> tuple[list[Change], list[Skip]]:
        """``changes`` re-checked against the tickets as last seen."""
        return recheck(
            changes,
            method=self.method,
            done=set(),
            pending=set(),
            unreadable=unreadable,
            snapshots=self.snapshots,
            fresh=self.current,
            specs=self.specs,
            rules=self.settings.fields,
        )

    def requests(self, changes: list[Change], *, bulk: bool | None = None) -> list[Request]:
        """Requests carrying ``changes`` (bulk updates as configured unless ``bulk`` says)."""
        if self.method == "note":
            return plan_notes(changes, specs=self.specs)
        pipeline = self.settings.pipeline
        return plan_writes(
            changes,
            tag=pipeline.triaged_tag,
            bulk=pipeline.bulk_update if bulk is None else bulk,
            bulk_min_tickets=pipeline.bulk_min_tickets,
        )


async def push(
    ctx: StageContext,
    decisions: DecideManifest,
    tickets: ExtractManifest,
    adapter: TicketSystemAdapter,
    *,
    on_progress: Callable[[float], None] | None = None,
) -> PushManifest:
    """Send what ``decisions`` decided (per its mode) and audit it. Never cached: idempotent by audit."""
    settings = ctx.settings()
    lake = ctx.lake(settings)
    mode = decisions.mode
    with recorded(ctx, lake, "push", mode=mode) as record:
        method: Method = "note" if mode == "suggest" else "update"
        state = _Push(ctx, settings, lake, adapter, {}, [], {}, method=method)
        wanted = {"shadow": (), "suggest": ("apply", "suggest"), "apply": ("apply",)}[mode]
        sends = bool(wanted)
        changes = _load_changes(lake, decisions, wanted=wanted) if sends else []
        dangling = dangling_intents(lake)
        owed = owed_results(lake, KIND[method]) if sends else []
        recovered = 0
        if changes or dangling or owed:
            state.specs = await adapter.get_fields()
            requests, recovered = await _plan(state, changes, tickets, dangling, owed, sends=sends)
            await _send_all(state, requests, on_progress)
        add_count(state.counts, "*", "requests", state.sent)
        add_count(state.counts, "*", "recovered", recovered)
        record.rows_in, record.rows_out, record.counts = len(changes), state.rows, state.counts
        return PushManifest(
            run_id=ctx.run_id,
            paths=state.paths,
            rows=state.rows,
            counts=state.counts,
            mode=mode,
            sent=state.sent,
            recovered=recovered,
        )


async def _plan(
    state: _Push,
    changes: list[Change],
    tickets: ExtractManifest,
    dangling: Rows,
    owed: Rows,
    *,
    sends: bool,
) -> tuple[list[Request], int]:
    """Re-read, resolve cut-off writes, add owed ones, re-check; the requests and how many were resolved."""
    settings, lake = state.settings, state.lake
    state.snapshots = {
        t: row_ticket(r) for t, r in latest_snapshots(lake.read_paths("tickets", tickets.paths)).items()
    }
    since = min([tickets.started_at, *(r["sent_at"] for r in [*dangling, *owed] if r["sent_at"])])
    state.read_at = utcnow()
    fresh, unreadable = await _changed_since(
        state, since - timedelta(seconds=settings.pipeline.overlap_seconds)
    )
    pending, recovered = await _resolve(state, dangling, fresh)
    if sends and recovered:
        owed = owed_results(lake, KIND[state.method])  # now with what the re-read found missing
    changes = [*changes, *_owed(state, changes, owed)]
    state.current = {**state.snapshots, **fresh}
    kept, skipped = recheck(
        changes,
        method=state.method,
        done=done_changes(lake, {c.ticket_id for c in changes}),
        pending=pending,
        unreadable=unreadable,
        snapshots=state.snapshots,
        fresh=state.current,
        specs=state.specs,
        rules=settings.fields,
    )
    if skipped:
        state.record([_skip_row(state.ctx, s, state.method) for s in skipped])
    return state.requests(kept), recovered


def _owed(state: _Push, changes: list[Change], owed: Rows) -> list[Change]:
    """Changes earlier pushes still owe, with their snapshots; those a newer decision replaces are
    audited ``superseded``, those whose snapshot is gone ``unreadable``."""
    decided = {c.ticket_id for c in changes}
    keys = {change_key(c.ticket_id, c.field, c.label, state.method) for c in changes}
    carried: list[Change] = []
    dropped: list[Skip] = []
    for row in owed:
        change = _change(row)
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
        state.record([_skip_row(state.ctx, s, state.method) for s in dropped])
    return usable


def _load_changes(lake: Lake, decisions: DecideManifest, *, wanted: tuple[str, ...]) -> list[Change]:
    rows = lake.read_paths("decisions", decisions.paths).to_pylist()
    return [
        Change(
            ticket_id=r["ticket_id"],
            field=r["field"],
            label=r["label"],
            probability=r["probability"],
            decision_run_id=r["run_id"],
            model_version=r["model_version"],
            snapshot_updated_at=r["snapshot_updated_at"],
        )
        for r in rows
        if r["action"] in wanted and r["label"] is not None
    ]


async def _changed_since(state: _Push, since: datetime) -> tuple[dict[int, Ticket], set[int]]:
    """Every ticket changed since ``since`` as it is now (one paged read), and those unreadable
    (quarantined with their raw JSON)."""
    fresh: dict[int, Ticket] = {}
    malformed: list[MalformedTicketError] = []
    async for ticket in state.adapter.iter_updated_tickets(since, on_malformed=malformed.append):
        fresh[ticket.id] = ticket
    if malformed:
        rows = [quarantine_row(state.ctx.run_id, "push", exc) for exc in malformed]
        state.lake.write(
            "quarantine",
            rows,
            date=state.ctx.partition,
            run_id=state.ctx.run_id,
            name=f"push-{uuid.uuid4().hex}",
        )
    return fresh, {exc.ticket_id for exc in malformed if exc.ticket_id is not None}


async def _resolve(state: _Push, dangling: Rows, fresh: Mapping[int, Ticket]) -> tuple[set[int], int]:
    """Result rows for intents left open; returns the tickets still pending and how many resolved."""
    now = utcnow()
    settle = timedelta(seconds=state.settings.pipeline.bulk_settle_seconds)
    pending: set[int] = set()
    rows: Rows = []
    notes: dict[str, Rows] = defaultdict(list)
    for intent in dangling:
        base = {**intent, "run_id": state.ctx.run_id, "phase": "result", "completed_at": now}
        if intent["method"] == "note":
            notes[intent["write_id"]].append(base)
            continue
        ticket = fresh.get(intent["ticket_id"])
        spec = state.specs.get(intent["field"])
        value = ticket.native(intent["field"]) if ticket else None
        if ticket is not None and (spec.to_label(value) if spec else value) == intent["label"]:
            rows.append(_confirmed(base, ticket))
        elif intent["method"] == "bulk_update" and intent["sent_at"] and now - intent["sent_at"] < settle:
            pending.add(intent["ticket_id"])  # its job may still be running: decide next time
        else:
            rows.append({**base, "status": "not_applied", "reason_code": "not_found_on_reread"})
    for note in notes.values():
        reference = note_reference(_change(r) for r in note)
        found = await state.adapter.has_note(note[0]["ticket_id"], reference)
        outcome = {
            True: {"status": "ok", "reason_code": "confirmed_on_reread"},
            False: {"status": "not_applied", "reason_code": "not_found_on_reread"},
            None: {"status": "unknown", "reason_code": "note_unverifiable"},
        }[found]
        rows.extend({**r, **outcome} for r in note)
    if rows:
        state.record(rows)
    return pending, len(rows)


def _change(row: dict[str, Any]) -> Change:
    """The change an audit row carries out."""
    return Change(
        ticket_id=row["ticket_id"],
        field=row["field"],
        label=row["label"],
        probability=None,
        decision_run_id=row["decision_run_id"],
        model_version=row["model_version"],
        snapshot_updated_at=row["snapshot_updated_at"],
    )


def _confirmed(base: dict[str, Any], ticket: Ticket) -> dict[str, Any]:
    return {
        **base,
        "status": "ok",
        "reason_code": "confirmed_on_reread",
        "ticket_updated_at": ticket.updated_at,
    }


async def _send_all(
    state: _Push, requests: list[Request], on_progress: Callable[[float], None] | None
) -> None:
    """Send ``requests`` in batches (a bulk update, or up to ``SINGLE_BATCH`` single requests)."""
    total = sum(len(r.ticket_ids) for r in requests) or 1
    batches: list[list[Request]] = []
    singles: list[Request] = []
    for request in requests:
        if request.method == "bulk_update":
            batches.append([request])
        else:
            singles.append(request)
            if len(singles) >= SINGLE_BATCH:
                batches.append(singles)
                singles = []
    if singles:
        batches.append(singles)
    every = timedelta(seconds=state.settings.pipeline.push_reread_seconds)
    done = 0
    for index, batch in enumerate(batches):
        size = sum(len(r.ticket_ids) for r in batch)
        if index and state.method == "note" and utcnow() - state.read_at >= every:
            batch = await _reread_notes(state, batch)
        await _send_batch(state, batch)
        done += size
        if on_progress:
            on_progress(done / total)
    if on_progress:
        on_progress(1.0)


async def _reread_notes(state: _Push, batch: list[Request]) -> list[Request]:
    """A batch of notes re-checked against what changed since the last read."""
    started = utcnow()
    assert state.read_at is not None
    fresh, unreadable = await _changed_since(state, state.read_at - state.slack)
    state.read_at = started
    state.current.update(fresh)
    changes = [c for r in batch for c in r.changes]
    kept, skipped = state.check(changes, unreadable)
    if skipped:
        state.record([_skip_row(state.ctx, s, state.method) for s in skipped])
    return batch if len(kept) == len(changes) else state.requests(kept)


async def _send_batch(state: _Push, batch: list[Request]) -> None:
    """Intents, then each request (re-read right before it), then the results; on a stopping
    error the results known so far, the lost request re-read, the unsent ones ``not_sent``."""
    write_ids = [uuid.uuid4().hex for _ in batch]
    sent_at = utcnow()
    state.record(
        [
            _row(state.ctx, r, c, w, "intent", "pending", sent_at)
            for r, w in zip(batch, write_ids, strict=True)
            for c in r.changes
        ]
    )
    results: Rows = []
    index = 0
    try:
        while index < len(batch):
            results.extend(await _send(state, batch[index], write_ids[index]))
            index += 1
    except TicketSystemError:
        results.extend(await _after_lost(state, batch[index], write_ids[index], sent_at))
        for request, write_id in zip(batch[index + 1 :], write_ids[index + 1 :], strict=True):
            results.extend(_results(state, request, write_id, sent_at, "not_applied", reason_code="not_sent"))
        raise
    finally:
        if results:
            state.record(results)


async def _after_lost(state: _Push, request: Request, write_id: str, sent_at: datetime) -> Rows:
    """Results for a request that failed with its outcome unknown: what a re-read shows written (a
    bulk update's values, a note by its reference) is ``ok``; the rest stays open for the next push
    to resolve (a bulk job may still run). Single updates were re-read by the adapter."""
    try:
        if request.method == "note":
            found = await state.adapter.has_note(request.ticket_ids[0], note_reference(request.changes))
            return (
                _results(state, request, write_id, sent_at, "ok", reason_code="confirmed_on_reread")
                if found
                else []
            )
        if request.method != "bulk_update":
            return []
        fresh, _ = await _changed_since(state, sent_at - state.slack)
    except TicketSystemError:
        return []  # the re-read fails too: the next push resolves the intents
    return _found_written(state, request, write_id, sent_at, request.changes, fresh)


def _found_written(
    state: _Push,
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
            and spec is not None
            and spec.to_label(ticket.native(change.field)) == change.label
        ):
            base = _row(state.ctx, request, change, write_id, "result", "ok", sent_at, completed_at=now)
            rows.append(_confirmed(base, ticket))
    return rows


def _results(
    state: _Push,
    request: Request,
    write_id: str,
    sent_at: datetime,
    status: str,
    changes: Iterable[Change] | None = None,
    **extra: Any,
) -> Rows:
    """One result row per change of ``request`` (or per one of ``changes``)."""
    now = utcnow()
    return [
        _row(state.ctx, request, c, write_id, "result", status, sent_at, completed_at=now, **extra)
        for c in (request.changes if changes is None else changes)
    ]


async def _send(state: _Push, request: Request, write_id: str) -> Rows:
    """One request, re-read and re-checked right before it is sent; its result rows. A refusal gives
    ``failed`` rows; transient and authentication errors are raised (the stage stops)."""
    sent_at = utcnow()
    try:
        if request.method == "bulk_update":
            return await _send_bulk(state, request, write_id)
        if request.method == "update":
            return await _send_update(state, request, write_id)
        await state.adapter.add_note(request.ticket_ids[0], request.data["body"], private=True)
        state.sent += 1
        return _results(state, request, write_id, sent_at, "ok", **_last_response(state.adapter))
    except TicketSystemError as exc:
        if is_transient(exc) or isinstance(exc, AuthenticationError):
            raise  # the stage stops; this request's intent stays open and is resolved on rerun
        return _results(
            state,
            request,
            write_id,
            sent_at,
            "failed",
            reason_code=type(exc).__name__,
            http_status=exc.status_code,
            request_id=exc.request_id,
            error=redact(str(exc)),
        )


async def _send_update(state: _Push, request: Request, write_id: str) -> Rows:
    """A single update, after a re-read of its ticket (fields changed since the snapshot are left)."""
    ticket_id = request.ticket_ids[0]
    await state.adapter.wait_for_write_room()
    state.current[ticket_id] = fresh = await state.adapter.get_ticket(ticket_id)
    kept, skipped = state.check(list(request.changes))
    rows = [_skip_row(state.ctx, s, request.method, write_id) for s in skipped]
    if kept:
        sending = state.requests(kept, bulk=False)[0] if skipped else request
        sent_at = utcnow()
        updated = await state.adapter.update_ticket(ticket_id, sending.data, current=fresh)
        state.sent += 1
        meta = _last_response(state.adapter)
        rows += _results(
            state, sending, write_id, sent_at, "ok", ticket_updated_at=updated.updated_at, **meta
        )
    return rows


async def _send_bulk(state: _Push, request: Request, write_id: str) -> Rows:
    """A bulk update, after a re-read of the tickets changed since the last read; when that changes
    what its tickets should get, they go out as single updates instead (each re-read again)."""
    await state.adapter.wait_for_write_room(bulk=True)
    started = utcnow()
    assert state.read_at is not None
    fresh, unreadable = await _changed_since(state, state.read_at - state.slack)
    state.read_at = started
    state.current.update(fresh)
    kept, skipped = state.check(list(request.changes), unreadable & set(request.ticket_ids))
    rows = [_skip_row(state.ctx, s, request.method, write_id) for s in skipped]
    if skipped:
        for single in state.requests(kept, bulk=False):
            rows += await _send(state, single, write_id)
        return rows
    sent_at = utcnow()
    result = await state.adapter.bulk_update(request.ticket_ids, request.data)
    state.sent += 1
    meta = {"http_status": result.status_code, "request_id": result.request_id, "job_id": result.job_id}
    ok = set(result.succeeded)
    rows += _results(
        state, request, write_id, sent_at, "ok", [c for c in request.changes if c.ticket_id in ok], **meta
    )
    failed = [c for c in request.changes if c.ticket_id not in ok]
    if failed:  # a job's report can be incomplete (PARTIAL without per-ticket data): look before saying so
        fresh, _ = await _changed_since(state, sent_at - state.slack)
        found = _found_written(state, request, write_id, sent_at, failed, fresh)
        rows += found
        written = {(r["ticket_id"], r["field"]) for r in found}
        failed = [c for c in failed if (c.ticket_id, c.field) not in written]
    for change in failed:
        reason = redact(result.failed.get(change.ticket_id, "no result for this ticket"))
        rows += _results(
            state,
            request,
            write_id,
            sent_at,
            "failed",
            [change],
            reason_code="bulk_failed",
            error=reason,
            **meta,
        )
    return rows


def _last_response(adapter: TicketSystemAdapter) -> dict[str, Any]:
    """HTTP status and request id of the adapter's last response, when it exposes them."""
    info = getattr(adapter, "last_response", None)
    if info is None:
        return {}
    return {"http_status": info.status_code, "request_id": info.request_id}


def _row(
    ctx: StageContext,
    request: Request,
    change: Change,
    write_id: str,
    phase: str,
    status: str,
    sent_at: datetime,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "run_id": ctx.run_id,
        "decision_run_id": change.decision_run_id,
        "write_id": write_id,
        "phase": phase,
        "ticket_id": change.ticket_id,
        "field": change.field,
        "label": change.label,
        "method": request.method,
        "status": status,
        "snapshot_updated_at": change.snapshot_updated_at,
        "sent_at": sent_at,
        "model_version": change.model_version,
        **extra,
    }


def _skip_row(ctx: StageContext, skip: Skip, method: Method, write_id: str | None = None) -> dict[str, Any]:
    """A ``skipped`` result (for an intent already written: with that intent's ``write_id``)."""
    request = Request(method, (skip.change.ticket_id,), {}, (skip.change,))
    return _row(
        ctx,
        request,
        skip.change,
        write_id or uuid.uuid4().hex,
        "result",
        "skipped",
        utcnow(),
        reason_code=skip.reason_code,
        error=skip.message,
        completed_at=utcnow(),
    )
