"""Sending planned requests in batches, each request re-read and re-checked right before it goes.

Per batch: ``intent`` rows; then per request a re-read (a single update reads its ticket, a bulk
update the tickets changed since the last read), the re-check, the request and its ``result`` rows.
A stopping failure records what is known first: the lost request as a re-read shows it
(:func:`triage.tasks.push_recovery.after_lost`), the batch's unsent requests ``not_applied`` (``not_sent``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from triage.adapters.base import TicketSystemAdapter
from triage.adapters.errors import AuthenticationError, TicketSystemError, is_transient
from triage.lake.runs import utcnow
from triage.redaction import redact
from triage.tasks.push_plan import Request
from triage.tasks.push_recovery import after_lost, found_written
from triage.tasks.push_state import PushState, Rows, audit_row, changed_since, result_rows, skip_row

#: Single updates and notes are recorded in batches of this many requests (one intent and one
#: result part each); a bulk update is its own batch.
SINGLE_BATCH = 25


async def send_all(
    state: PushState, requests: list[Request], on_progress: Callable[[float], None] | None
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
        if index and state.method == "note":
            assert state.read_at is not None  # set by the re-read before sending (tasks/push.py)
            if utcnow() - state.read_at >= every:
                batch = await _reread_notes(state, batch)
        await _send_batch(state, batch)
        done += size
        if on_progress:
            on_progress(done / total)
    if on_progress:
        on_progress(1.0)


async def _reread_notes(state: PushState, batch: list[Request]) -> list[Request]:
    """A batch of notes re-checked against what changed since the last read."""
    started = utcnow()
    assert state.read_at is not None
    fresh, unreadable = await changed_since(state, state.read_at - state.slack)
    state.read_at = started
    state.current.update(fresh)
    changes = [c for r in batch for c in r.changes]
    kept, skipped = state.check(changes, unreadable)
    if skipped:
        state.record([skip_row(state.ctx, s, state.method) for s in skipped])
    return batch if len(kept) == len(changes) else state.requests(kept)


async def _send_batch(state: PushState, batch: list[Request]) -> None:
    """Intents, then each request (re-read right before it), then the results; on a stopping
    error the results known so far, the lost request re-read, the unsent ones ``not_sent``."""
    write_ids = [uuid.uuid4().hex for _ in batch]
    sent_at = utcnow()
    state.record(
        [
            audit_row(state.ctx, r, c, w, "intent", "pending", sent_at)
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
        results.extend(await after_lost(state, batch[index], write_ids[index], sent_at))
        for request, write_id in zip(batch[index + 1 :], write_ids[index + 1 :], strict=True):
            results.extend(
                result_rows(state, request, write_id, sent_at, "not_applied", reason_code="not_sent")
            )
        raise
    finally:
        if results:
            state.record(results)


async def _send(state: PushState, request: Request, write_id: str) -> Rows:
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
        return result_rows(state, request, write_id, sent_at, "ok", **_last_response(state.adapter))
    except TicketSystemError as exc:
        if is_transient(exc) or isinstance(exc, AuthenticationError):
            raise  # the stage stops; this request's intent stays open and is resolved on rerun
        return result_rows(
            state,
            request,
            write_id,
            sent_at,
            "failed",
            reason_code=exc.reason_code,
            http_status=exc.status_code,
            request_id=exc.request_id,
            error=redact(str(exc)),
        )


async def _send_update(state: PushState, request: Request, write_id: str) -> Rows:
    """A single update, after a re-read of its ticket (fields changed since the snapshot are left)."""
    ticket_id = request.ticket_ids[0]
    await state.adapter.wait_for_write_room()
    state.current[ticket_id] = fresh = await state.adapter.get_ticket(ticket_id)
    kept, skipped = state.check(list(request.changes))
    rows = [skip_row(state.ctx, s, request.method, write_id) for s in skipped]
    if kept:
        sending = state.requests(kept, bulk=False)[0] if skipped else request
        sent_at = utcnow()
        updated = await state.adapter.update_ticket(ticket_id, sending.data, current=fresh)
        state.sent += 1
        meta = _last_response(state.adapter)
        rows += result_rows(
            state, sending, write_id, sent_at, "ok", ticket_updated_at=updated.updated_at, **meta
        )
    return rows


async def _send_bulk(state: PushState, request: Request, write_id: str) -> Rows:
    """A bulk update, after a re-read of the tickets changed since the last read; when that changes
    what its tickets should get, they go out as single updates instead (each re-read again)."""
    await state.adapter.wait_for_write_room(bulk=True)
    started = utcnow()
    assert state.read_at is not None
    fresh, unreadable = await changed_since(state, state.read_at - state.slack)
    state.read_at = started
    state.current.update(fresh)
    kept, skipped = state.check(list(request.changes), unreadable & set(request.ticket_ids))
    rows = [skip_row(state.ctx, s, request.method, write_id) for s in skipped]
    if skipped:
        for single in state.requests(kept, bulk=False):
            rows += await _send(state, single, write_id)
        return rows
    sent_at = utcnow()
    result = await state.adapter.bulk_update(request.ticket_ids, request.data)
    state.sent += 1
    meta = {"http_status": result.status_code, "request_id": result.request_id, "job_id": result.job_id}
    ok = set(result.succeeded)
    rows += result_rows(
        state, request, write_id, sent_at, "ok", [c for c in request.changes if c.ticket_id in ok], **meta
    )
    failed = [c for c in request.changes if c.ticket_id not in ok]
    if failed:  # a job's report can be incomplete (PARTIAL without per-ticket data): look before saying so
        fresh, _ = await changed_since(state, sent_at - state.slack)
        found = found_written(state, request, write_id, sent_at, failed, fresh)
        rows += found
        written = {(r.ticket_id, r.field, r.label) for r in found}
        failed = [c for c in failed if (c.ticket_id, c.field, c.label) not in written]
    for change in failed:
        reason = redact(result.failed.get(change.ticket_id, "no result for this ticket"))
        rows += result_rows(
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
