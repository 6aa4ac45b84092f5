"""Record each stage attempt in ``runs`` (``ok`` with its counts, or ``failed`` with the error), and
describe a run's writes over all its attempts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from triage.lake import Lake, record_stage
from triage.lake.runs import utcnow
from triage.lake.tables.audit import AUDIT, AuditRow
from triage.redaction import redact
from triage.tasks.context import StageContext
from triage.tasks.manifest import Counts, PushManifest, add_count

#: Reason codes of results that resolved a write cut off by a crash (see ``triage.tasks.audit.AUDIT_REASONS``).
RECOVERY_REASONS = ("confirmed_on_reread", "not_found_on_reread", "note_unverifiable")
_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass
class StageRecord:
    """Filled in by the stage while it runs; written when it ends."""

    started_at: datetime = field(default_factory=utcnow)
    rows_in: int | None = None
    rows_out: int | None = None
    counts: Counts | None = None
    high_water_mark: datetime | None = None
    model_version: str | None = None
    message: str | None = None


@contextmanager
def recorded(ctx: StageContext, lake: Lake, stage: str, *, mode: str | None) -> Iterator[StageRecord]:
    """Write one ``runs`` row for the stage when the block ends, whether it succeeds or fails."""
    record = StageRecord()
    try:
        yield record
    except BaseException as exc:
        _write(ctx, lake, stage, mode, record, "failed", redact(f"{type(exc).__name__}: {exc}"))
        raise
    _write(ctx, lake, stage, mode, record, "ok", record.message)


def _write(
    ctx: StageContext, lake: Lake, stage: str, mode: str | None, record: StageRecord, status, message
) -> None:
    record_stage(
        lake,
        run_id=ctx.run_id,
        flow=ctx.flow,
        stage=stage,
        status=status,
        started_at=record.started_at,
        window=ctx.window,
        partition=ctx.partition,
        high_water_mark=record.high_water_mark,
        mode=mode,
        model_version=record.model_version,
        rows_in=record.rows_in,
        rows_out=record.rows_out,
        counts=record.counts,
        message=message,
        parent_run_id=ctx.parent_run_id,
        attempt=ctx.attempt,
    )


def whole_run(ctx: StageContext, lake: Lake, pushed: PushManifest) -> PushManifest:
    """``pushed`` (one attempt's push) widened to every attempt of the run, from its audit partition.

    Per ticket and field the latest result counts, so a write that failed in the first attempt and
    succeeded in the retry counts once, as ``ok``; ``*`` counts requests sent and cut-off writes
    resolved over all attempts.
    """
    audit = AUDIT.read_partition(lake, date=ctx.partition, run_id=ctx.run_id)
    latest: dict[tuple[int, str], AuditRow] = {}
    for row in sorted((r for r in audit if r.phase == "result"), key=lambda r: r.completed_at or _NEVER):
        latest[(row.ticket_id, row.field)] = row
    counts: Counts = {}
    for row in latest.values():
        add_count(counts, row.field, row.status)
    add_count(counts, "*", "requests", len({r.write_id for r in audit if r.phase == "intent"}))
    add_count(counts, "*", "recovered", sum(r.reason_code in RECOVERY_REASONS for r in audit))
    stars = counts["*"]
    return pushed.model_copy(
        update={
            "rows": len(audit),
            "counts": counts,
            "sent": stars["requests"],
            "recovered": stars["recovered"],
        }
    )
