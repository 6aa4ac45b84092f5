"""Push: carry out a run's decisions in the ticket system, with an audit row for every attempt.

Order of work, each step safe to repeat:

1. Re-read the tickets changed since the extract (one incremental read, not one call per ticket).
2. Resolve intents left without a result (a crash, or an answer lost) from that re-read
   (:mod:`triage.tasks.push_recovery`): a ticket carrying the value was written (``ok``), one without it
   was not (``not_applied``); a note is looked up in the ticket's conversations. A bulk write
   younger than ``pipeline.bulk_settle_seconds`` may still be running: its ticket waits.
3. Shadow mode stops here: nothing is sent.
4. The changes to make: this run's decisions plus those earlier pushes still owe (latest result
   ``not_applied``), re-checked (:func:`triage.tasks.push_plan.recheck`) and planned as requests.
5. Per batch (:mod:`triage.tasks.push_send`): ``intent`` rows; then each request re-reads its tickets
   right before it is sent (a single update reads its ticket; a bulk update the tickets changed
   since the last read), is re-checked against them, sent, and gets ``result`` rows. A transient or
   authentication failure stops the stage after recording what is known: a request whose answer
   was lost as a re-read shows it (:mod:`triage.tasks.push_recovery`), the batch's unsent requests
   ``not_applied`` (``not_sent``); the retry or the next run sends what is owed. Suggestion notes
   re-read between batches every ``pipeline.push_reread_seconds``.
6. The run's audit parts are merged into their date's file, their open items folded into the audit's
   state (:func:`triage.tasks.audit.compact_audit`), so the next run reads no more of history than is open.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import cast

from triage.adapters.base import TicketSystemAdapter
from triage.lake import Lake
from triage.lake.compaction import summary
from triage.lake.runs import utcnow
from triage.lake.tables.decisions import DECISIONS
from triage.lake.tables.tickets import TICKETS
from triage.tasks.audit import KIND, compact_audit, dangling_intents, done_changes, owed_results
from triage.tasks.context import StageContext
from triage.tasks.manifest import DecideManifest, ExtractManifest, PushManifest, add_count
from triage.tasks.push_plan import Change, Method, Request, recheck
from triage.tasks.push_recovery import owed_changes, resolve_open
from triage.tasks.push_send import send_all
from triage.tasks.push_state import PushState, Rows, changed_since, skip_row
from triage.tasks.runlog import recorded
from triage.tasks.snapshots import latest_snapshots, row_ticket

log = logging.getLogger(__name__)


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
    mode = settings.pipeline.mode  # the run's snapshot, the one decide acted on too
    with recorded(ctx, lake, "push", mode=mode) as record:
        method: Method = "note" if mode == "suggest" else "update"
        state = PushState(ctx, settings, lake, adapter, {}, [], {}, method=method)
        wanted = {"shadow": (), "suggest": ("apply", "suggest"), "apply": ("apply",)}[mode]
        sends = bool(wanted)
        changes = _load_changes(lake, decisions, wanted=wanted) if sends else []
        dangling = dangling_intents(lake)
        owed = owed_results(lake, KIND[method]) if sends else []
        recovered = 0
        if changes or dangling or owed:
            state.specs = await adapter.get_fields()
            requests, recovered = await _plan(state, changes, tickets, dangling, owed, sends=sends)
            await send_all(state, requests, on_progress)
        merged = compact_audit(lake)  # the next run reads open items, not this run's parts one by one
        log.info("%s", summary(merged))
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
    state: PushState,
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
        t: row_ticket(r) for t, r in latest_snapshots(lake.read_paths(TICKETS.name, tickets.paths)).items()
    }
    since = min([tickets.started_at, *(r.sent_at for r in [*dangling, *owed] if r.sent_at)])
    state.read_at = utcnow()
    fresh, unreadable = await changed_since(state, since - state.slack)  # on Freshdesk's clock
    pending, recovered = await resolve_open(state, dangling, fresh)
    if sends and recovered:
        owed = owed_results(lake, KIND[state.method])  # now with what the re-read found missing
    changes = [*changes, *owed_changes(state, changes, owed)]
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
        state.record([skip_row(state.ctx, s, state.method) for s in skipped])
    return state.requests(kept), recovered


def _load_changes(lake: Lake, decisions: DecideManifest, *, wanted: tuple[str, ...]) -> list[Change]:
    """This run's decisions to carry out in the mode (its own parts: bounded by the run's tickets)."""
    return [
        Change(
            ticket_id=d.ticket_id,
            field=d.field,
            label=d.label,
            probability=d.probability,
            decision_run_id=d.run_id,
            model_version=d.model_version,
            snapshot_updated_at=cast(datetime, d.snapshot_updated_at),  # decide sets it on every row
        )
        for d in DECISIONS.read_paths(lake, decisions.paths)
        if d.action in wanted and d.label is not None
    ]
