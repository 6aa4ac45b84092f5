"""Push: carry out a run's decisions in the ticket system, with an audit row for every attempt.

Order of work, each step safe to repeat:

1. Re-read the tickets changed since the snapshot (one incremental read, not one call per ticket).
2. Resolve intents a crash left without a result, from that re-read: a ticket carrying the value
   was written (``ok``), one without it was not (``not_applied``: sent again below). A bulk write
   younger than ``pipeline.bulk_settle_seconds`` may still be running: its ticket waits.
3. Shadow mode stops here: nothing is sent.
4. Re-check the decided changes (:func:`tasks.push_plan.recheck`) and plan requests.
5. Per batch: re-read what changed since the last read when ``pipeline.push_reread_seconds`` have
   passed, and re-check the batch (a long push takes minutes at Freshdesk's limits: an agent may
   act meanwhile); write ``intent`` rows, send, write ``result`` rows. A transient or authentication failure stops the stage after recording what is
   known; a rerun resumes from the audit trail.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from adapters.base import FieldSpec, Ticket, TicketSystemAdapter
from adapters.errors import AuthenticationError, MalformedTicketError, TicketSystemError, is_transient
from tasks.audit import ChangeKey, dangling_intents, done_changes, write_audit
from tasks.context import StageContext
from tasks.manifest import DecideManifest, ExtractManifest, PushManifest, add_count
from tasks.push_plan import Change, Method, Request, Skip, plan_notes, plan_writes, recheck
from tasks.runlog import recorded
from tasks.snapshots import latest_snapshots, quarantine_row, row_ticket
from triage.lake import Lake
from triage.lake.runs import utcnow
from triage.redaction import redact
from triage.settings import Settings

#: Single updates and notes are recorded in batches of this many requests (one intent and one
#: result part each); a bulk update is its own batch.
SINGLE_BATCH = 25


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
    #: The tickets as last seen: the snapshot, or the latest re-read where they changed since.
    snapshots: dict[int, Ticket] = field(default_factory=dict)
    current: dict[int, Ticket] = field(default_factory=dict)
    #: When the last re-read started (the next one reads changes since then, minus the overlap).
    read_at: datetime | None = None

    def record(self, rows: list[dict[str, Any]]) -> None:
        part = write_audit(self.lake, rows, run_id=self.ctx.run_id, partition=self.ctx.partition)
        if part:
            self.paths.append(part.path)
            self.rows += part.rows
        for row in rows:
            if row["phase"] == "result":
                add_count(self.counts, row["field"], row["status"])


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
        changes = _load_changes(lake, decisions, wanted=wanted) if wanted else []
        dangling = dangling_intents(lake)
        recovered = 0
        if changes or dangling:
            state.specs = await adapter.get_fields()
            requests, recovered = await _plan(state, changes, tickets, dangling)
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
    state: _Push, changes: list[Change], tickets: ExtractManifest, dangling: list[dict[str, Any]]
) -> tuple[list[Request], int]:
    """Re-read, resolve cut-off writes, re-check the changes; the requests and how many were resolved."""
    settings, lake = state.settings, state.lake
    state.snapshots = {
        t: row_ticket(r) for t, r in latest_snapshots(lake.read_paths("tickets", tickets.paths)).items()
    }
    since = min([tickets.started_at, *(i["sent_at"] for i in dangling if i["sent_at"])])
    state.read_at = utcnow()
    fresh, unreadable = await _changed_since(
        state, since - timedelta(seconds=settings.pipeline.overlap_seconds)
    )
    state.current = {**state.snapshots, **fresh}
    pending, recovered = _resolve(state, dangling, fresh)
    kept = _recheck(
        state,
        changes,
        done=done_changes(lake, {c.ticket_id for c in changes}),
        pending=pending,
        unreadable=unreadable,
    )
    return _requests(state, kept), recovered


def _recheck(
    state: _Push,
    changes: list[Change],
    *,
    done: set[ChangeKey] = frozenset(),
    pending: set[int] = frozenset(),
    unreadable: set[int] = frozenset(),
) -> list[Change]:
    """The changes still to send against the tickets as last seen; audits the skipped ones."""
    kept, skipped = recheck(
        changes,
        method=state.method,
        done=done,
        pending=pending,
        unreadable=unreadable,
        snapshots=state.snapshots,
        fresh=state.current,
        specs=state.specs,
        rules=state.settings.fields,
    )
    if skipped:
        state.record([_skip_row(state.ctx, s, state.method) for s in skipped])
    return kept


def _requests(state: _Push, changes: list[Change]) -> list[Request]:
    if state.method == "note":
        return plan_notes(changes, specs=state.specs)
    pipeline = state.settings.pipeline
    return plan_writes(
        changes,
        tag=pipeline.triaged_tag,
        bulk=pipeline.bulk_update,
        bulk_min_tickets=pipeline.bulk_min_tickets,
    )


async def _reread(state: _Push, batch: list[Request]) -> list[Request]:
    """``batch`` re-checked against what changed since the last read (re-planned if anything did)."""
    started = utcnow()
    assert state.read_at is not None
    slack = timedelta(seconds=state.settings.pipeline.own_write_tolerance_seconds)
    fresh, unreadable = await _changed_since(state, state.read_at - slack)
    state.read_at = started
    state.current.update(fresh)
    ids = {t for r in batch for t in r.ticket_ids}
    changes = [c for r in batch for c in r.changes]
    kept = _recheck(state, changes, unreadable=unreadable & ids)
    return batch if len(kept) == len(changes) else _requests(state, kept)


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


def _resolve(
    state: _Push, dangling: list[dict[str, Any]], fresh: Mapping[int, Ticket]
) -> tuple[set[int], int]:
    """Result rows for intents a crash cut off; returns the tickets still pending and how many resolved."""
    now = utcnow()
    settle = timedelta(seconds=state.settings.pipeline.bulk_settle_seconds)
    pending: set[int] = set()
    rows: list[dict[str, Any]] = []
    for intent in dangling:
        ticket = fresh.get(intent["ticket_id"])
        base = {**intent, "run_id": state.ctx.run_id, "phase": "result", "completed_at": now}
        if intent["method"] == "note":
            rows.append({**base, "status": "unknown", "reason_code": "note_unverifiable"})
            continue
        spec = state.specs.get(intent["field"])
        value = ticket.native(intent["field"]) if ticket else None
        if ticket is not None and (spec.to_label(value) if spec else value) == intent["label"]:
            rows.append(
                {
                    **base,
                    "status": "ok",
                    "reason_code": "confirmed_on_reread",
                    "ticket_updated_at": ticket.updated_at,
                }
            )
        elif intent["method"] == "bulk_update" and intent["sent_at"] and now - intent["sent_at"] < settle:
            pending.add(intent["ticket_id"])  # its job may still be running: decide next time
        else:
            rows.append({**base, "status": "not_applied", "reason_code": "not_found_on_reread"})
    if rows:
        state.record(rows)
    return pending, len(rows)


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
        if index and state.read_at is not None and utcnow() - state.read_at >= every:
            batch = await _reread(state, batch)
        await _send_batch(state, batch)
        done += size
        if on_progress:
            on_progress(done / total)
    if on_progress:
        on_progress(1.0)


async def _send_batch(state: _Push, batch: list[Request]) -> None:
    """Intents, then the requests, then their results; on a stopping error the results so far first."""
    if not batch:
        return
    write_ids = [uuid.uuid4().hex for _ in batch]
    sent_at = utcnow()
    state.record(
        [
            _row(state.ctx, r, c, w, "intent", "pending", sent_at)
            for r, w in zip(batch, write_ids, strict=True)
            for c in r.changes
        ]
    )
    results: list[dict[str, Any]] = []
    try:
        for request, write_id in zip(batch, write_ids, strict=True):
            results.extend(await _send(state, request, write_id))
            state.sent += 1
    finally:
        if results:
            state.record(results)


async def _send(state: _Push, request: Request, write_id: str) -> list[dict[str, Any]]:
    ctx, adapter = state.ctx, state.adapter
    sent_at = utcnow()

    def rows(status: str, changes, **extra) -> list[dict[str, Any]]:
        return [
            _row(ctx, request, c, write_id, "result", status, sent_at, completed_at=utcnow(), **extra)
            for c in changes
        ]

    try:
        if request.method == "bulk_update":
            result = await adapter.bulk_update(request.ticket_ids, request.data)
            meta = {
                "http_status": result.status_code,
                "request_id": result.request_id,
                "job_id": result.job_id,
            }
            ok = set(result.succeeded)
            out = rows("ok", [c for c in request.changes if c.ticket_id in ok], **meta)
            for c in request.changes:
                if c.ticket_id not in ok:
                    reason = result.failed.get(c.ticket_id, "no result for this ticket")
                    out += rows("failed", [c], reason_code="bulk_failed", error=redact(reason), **meta)
            return out
        ticket_id = request.ticket_ids[0]
        if request.method == "note":
            await adapter.add_note(ticket_id, request.data["body"], private=True)
            return rows("ok", request.changes, **_last_response(adapter))
        updated = await adapter.update_ticket(ticket_id, request.data, current=state.current.get(ticket_id))
        return rows("ok", request.changes, ticket_updated_at=updated.updated_at, **_last_response(adapter))
    except TicketSystemError as exc:
        if is_transient(exc) or isinstance(exc, AuthenticationError):
            raise  # the stage stops; this request's intent stays open and is resolved on rerun
        return rows(
            "failed",
            request.changes,
            reason_code=type(exc).__name__,
            http_status=exc.status_code,
            request_id=exc.request_id,
            error=redact(str(exc)),
        )


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


def _skip_row(ctx: StageContext, skip: Skip, method: Method) -> dict[str, Any]:
    request = Request(method, (skip.change.ticket_id,), {}, (skip.change,))
    return _row(
        ctx,
        request,
        skip.change,
        uuid.uuid4().hex,
        "result",
        "skipped",
        utcnow(),
        reason_code=skip.reason_code,
        error=skip.message,
        completed_at=utcnow(),
    )
