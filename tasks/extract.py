"""Extract: tickets updated in the run's window, through the adapter, into ``tickets`` (in batches).

A triage extract marks tickets it must not classify (``skip_reason``): resolved or closed ones,
spam and deleted ones, and those whose last change was our own write (found in the audit trail),
so that our writes never loop. A history extract (for training) keeps only resolved/closed ones.
Rows the adapter cannot parse go to ``quarantine`` with their raw JSON: nothing is lost. Text that
is not valid Unicode (a lone surrogate) is repaired with U+FFFD and counted (``text_repaired``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

from triage.adapters.base import Ticket, TicketSystemAdapter
from triage.adapters.errors import MalformedTicketError
from triage.lake import Lake
from triage.lake.runs import last_high_water_mark, utcnow
from triage.lake.tables.quarantine import QUARANTINE, QuarantineRow
from triage.lake.tables.tickets import TICKETS, TicketRow
from triage.settings import Settings
from triage.tasks.audit import OwnWrites, own_writes
from triage.tasks.context import StageContext
from triage.tasks.manifest import ExtractManifest, add_count
from triage.tasks.runlog import recorded
from triage.tasks.snapshots import quarantine_row, ticket_row

Purpose = Literal["triage", "history"]
Progress = Callable[[float], None]
PART_PREFIX = "extract-"
logger = logging.getLogger(__name__)


async def extract(
    ctx: StageContext,
    adapter: TicketSystemAdapter,
    *,
    purpose: Purpose = "triage",
    on_progress: Progress | None = None,
) -> ExtractManifest:
    """Read the window ``[ctx.window_start, ctx.window_end)`` into the lake; returns the manifest."""
    settings = ctx.settings()
    lake = ctx.lake(settings)
    with recorded(ctx, lake, "extract", mode=settings.pipeline.mode) as record:
        manifest = await _extract(ctx, settings, lake, adapter, purpose, record.started_at, on_progress)
        record.rows_out, record.counts = manifest.rows, manifest.counts
        record.high_water_mark = manifest.high_water_mark
    return manifest


async def _extract(
    ctx: StageContext,
    settings: Settings,
    lake: Lake,
    adapter: TicketSystemAdapter,
    purpose: Purpose,
    started: datetime,
    on_progress: Progress | None,
) -> ExtractManifest:
    pipeline = settings.pipeline
    # A retried extract replaces its own earlier output rather than adding to it.
    for table in (TICKETS.name, QUARANTINE.name):
        lake.remove_parts(table, date=ctx.partition, run_id=ctx.run_id, prefix=PART_PREFIX)
    ours = own_writes(
        lake,
        since=ctx.window_start,
        tolerance=timedelta(seconds=pipeline.own_write_tolerance_seconds),
        clock_offset=adapter.clock_offset,
    )
    history = set(pipeline.history_statuses)
    quarantined: list[QuarantineRow] = []

    def quarantine(exc: MalformedTicketError) -> None:
        quarantined.append(quarantine_row(ctx.run_id, "extract", exc))

    batch: list[TicketRow] = []
    paths: list[str] = []
    counts: dict[str, dict[str, int]] = {}
    rows = eligible = 0
    newest: datetime | None = None  # the newest updated_at read, by the ticket system's clock

    def flush() -> None:
        nonlocal batch
        part = TICKETS.write(
            lake, batch, date=ctx.partition, run_id=ctx.run_id, name=f"{PART_PREFIX}{len(paths) + 1:05d}"
        )
        if part:
            paths.append(part.path)
        batch = []

    span = (ctx.window_end - ctx.window_start).total_seconds() or 1.0
    async for ticket in adapter.iter_updated_tickets(
        ctx.window_start, ctx.window_end, on_malformed=quarantine
    ):
        if (repaired := repaired_text(ticket)) is not None:
            logger.warning("ticket %s: invalid Unicode in its text replaced by U+FFFD", ticket.id)
            add_count(counts, "*", "text_repaired")
            ticket = repaired
        reason = skip_reason(ticket, purpose=purpose, history_statuses=history, ours=ours)
        batch.append(
            ticket_row(ticket, run_id=ctx.run_id, purpose=purpose, extracted_at=utcnow(), skip_reason=reason)
        )
        rows += 1
        eligible += reason is None
        newest = ticket.updated_at if newest is None else max(newest, ticket.updated_at)
        add_count(counts, "*", reason or "eligible")
        if len(batch) >= pipeline.extract_batch_size:
            flush()
            if on_progress:
                on_progress(min(1.0, (ticket.updated_at - ctx.window_start).total_seconds() / span))
    if batch:
        flush()
    quarantine_paths = []
    if quarantined:
        part = QUARANTINE.write(
            lake, quarantined, date=ctx.partition, run_id=ctx.run_id, name=f"{PART_PREFIX}00001"
        )
        quarantine_paths = [part.path] if part else []
        add_count(counts, "*", "quarantined", len(quarantined))
    add_count(counts, "*", "read", rows)
    if on_progress:
        on_progress(1.0)
    return ExtractManifest(
        run_id=ctx.run_id,
        purpose=purpose,
        paths=paths,
        rows=rows,
        eligible=eligible,
        quarantined=len(quarantined),
        quarantine_paths=quarantine_paths,
        counts=counts,
        started_at=started,
        high_water_mark=high_water_mark(ctx, lake, newest),
    )


def high_water_mark(ctx: StageContext, lake: Lake, newest: datetime | None) -> datetime:
    """Where the next incremental window starts (less the overlap): the newest ``updated_at`` read,
    never before the mark this window continued from.

    Only the ticket system's own timestamps count, never this machine's clock: with Freshdesk's
    clock behind ours by more than the overlap, a mark taken from our clock would skip every ticket
    changed in between. A window that read nothing keeps the mark where it was.
    """
    previous = last_high_water_mark(lake, flow=ctx.flow) if ctx.window_source == "watermark" else None
    marks = [mark for mark in (previous, newest) if mark is not None]
    return max(marks) if marks else ctx.window_start


_SURROGATE = re.compile("[\ud800-\udfff]")


def repaired_text(ticket: Ticket) -> Ticket | None:
    """``ticket`` with every lone UTF-16 surrogate in its text (valid JSON, but no UTF-8 file can hold
    it) replaced by U+FFFD, or ``None`` when its text is valid Unicode."""
    data = ticket.model_dump()
    fixed = _repaired(data)
    return None if fixed == data else Ticket.model_validate(fixed)


def _repaired(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_repaired(k): _repaired(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_repaired(v) for v in value)
    return value


def skip_reason(
    ticket: Ticket, *, purpose: Purpose, history_statuses: set[int], ours: OwnWrites
) -> str | None:
    """Why ``ticket`` is not classified (``None``: it is)."""
    if ticket.spam:
        return "spam"
    if ticket.deleted:
        return "deleted"
    resolved = ticket.status in history_statuses
    if purpose == "history":
        return None if resolved else "not_resolved"
    if resolved:
        return "resolved"
    if ours.matches(ticket.id, ticket.updated_at):
        return "own_write"
    return None
