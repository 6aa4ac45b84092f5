"""Push's working state and the audit rows it writes, shared by planning, recovery and sending."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, cast

from triage.adapters.base import FieldSpec, Ticket, TicketSystemAdapter
from triage.adapters.errors import MalformedTicketError
from triage.lake import Lake
from triage.lake.runs import utcnow
from triage.lake.tables.audit import AuditRow
from triage.lake.tables.quarantine import QUARANTINE
from triage.settings import Settings
from triage.tasks.audit import write_audit
from triage.tasks.context import StageContext
from triage.tasks.manifest import add_count
from triage.tasks.push_plan import Change, Method, Request, Skip, plan_notes, plan_writes, recheck
from triage.tasks.snapshots import quarantine_row

#: Audit rows push writes as one part.
Rows = list[AuditRow]


@dataclass
class PushState:
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
        """Append ``rows`` to the audit trail as one part and count the results."""
        part = write_audit(self.lake, rows, run_id=self.ctx.run_id, partition=self.ctx.partition)
        if part:
            self.paths.append(part.path)
            self.rows += part.rows
        for row in rows:
            if row.phase == "result":
                add_count(self.counts, row.field, row.status)

    def check(
        self, changes: list[Change], unreadable: AbstractSet[int] = frozenset()
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


async def changed_since(state: PushState, since: datetime) -> tuple[dict[int, Ticket], set[int]]:
    """Every ticket changed since ``since`` as it is now (one paged read), and those unreadable
    (quarantined with their raw JSON). ``since`` is of this machine's clock: the read starts from it on
    the ticket system's (a clock behind ours must not hide an agent's edit)."""
    fresh: dict[int, Ticket] = {}
    malformed: list[MalformedTicketError] = []
    start = since + state.adapter.clock_offset()
    async for ticket in state.adapter.iter_updated_tickets(start, on_malformed=malformed.append):
        fresh[ticket.id] = ticket
    if malformed:
        rows = [quarantine_row(state.ctx.run_id, "push", exc) for exc in malformed]
        QUARANTINE.write(
            state.lake,
            rows,
            date=state.ctx.partition,
            run_id=state.ctx.run_id,
            name=f"push-{uuid.uuid4().hex}",
        )
    return fresh, {exc.ticket_id for exc in malformed if exc.ticket_id is not None}


def audit_row(
    ctx: StageContext,
    request: Request,
    change: Change,
    write_id: str,
    phase: str,
    status: str,
    sent_at: datetime,
    **extra: Any,
) -> AuditRow:
    """The audit row of ``change`` carried by ``request``; ``extra`` fills the result's columns."""
    return AuditRow(
        run_id=ctx.run_id,
        decision_run_id=change.decision_run_id,
        write_id=write_id,
        phase=phase,
        ticket_id=change.ticket_id,
        field=change.field,
        label=change.label,
        method=request.method,
        status=status,
        snapshot_updated_at=change.snapshot_updated_at,
        sent_at=sent_at,
        model_version=change.model_version,
        **extra,
    )


def skip_row(ctx: StageContext, skip: Skip, method: Method, write_id: str | None = None) -> AuditRow:
    """A ``skipped`` result (for an intent already written: with that intent's ``write_id``)."""
    request = Request(method, (skip.change.ticket_id,), {}, (skip.change,))
    return audit_row(
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


def result_rows(
    state: PushState,
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
        audit_row(state.ctx, request, c, write_id, "result", status, sent_at, completed_at=now, **extra)
        for c in (request.changes if changes is None else changes)
    ]


def confirmed_row(base: AuditRow, ticket: Ticket) -> AuditRow:
    """``base`` as an ``ok`` result a re-read confirmed, with the ticket's ``updated_at``."""
    return replace(base, status="ok", reason_code="confirmed_on_reread", ticket_updated_at=ticket.updated_at)


def change_of(row: AuditRow) -> Change:
    """The change an audit row carries out (push writes every row from a :class:`Change`, so its label,
    decision run and snapshot are set)."""
    return Change(
        ticket_id=row.ticket_id,
        field=row.field,
        label=cast(str, row.label),
        probability=None,
        decision_run_id=cast(str, row.decision_run_id),
        model_version=row.model_version,
        snapshot_updated_at=cast(datetime, row.snapshot_updated_at),
    )
