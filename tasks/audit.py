"""The audit trail as the idempotency record: what was written, what is unresolved, what was ours.

Push writes ``intent`` rows before sending a request and ``result`` rows after. From those:

- :func:`done_changes`: changes with an ``ok`` (or ``unknown``) result are never sent again;
- :func:`dangling_intents`: intents without a result were cut off (a crash, or an answer lost)
  and must be resolved by re-reading the ticket before anything else is sent;
- :func:`owed_results`: changes whose latest result is ``not_applied`` (cut off or never sent,
  and absent on re-read) are sent by the next push in their mode, whichever run decided them;
- :func:`own_writes`: which ``updated_at`` values our own writes produced, so the next extract does
  not re-triage tickets only because we changed them.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pyarrow.compute as pc

from triage.lake import Lake, WrittenPart
from triage.lake.lease import check_fence

#: Result statuses that count as done: never sent again.
DONE_STATUSES = ("ok", "unknown")
#: Audit method -> kind of change (a field write, or a suggestion in a note).
KIND = {"update": "write", "bulk_update": "write", "note": "note"}

ChangeKey = tuple[int, str, str | None, str]

#: Every audit reason code with what it means (the README's table is generated from this).
AUDIT_REASONS: dict[str, str] = {
    "agent_changed": "skipped: the field changed since the snapshot (an agent set it); left alone",
    "already_set": "skipped: the ticket already has this value",
    "gone": "skipped: the ticket became spam or was deleted",
    "requires_unmet": "skipped: a field this one requires is no longer written or set",
    "unresolved_write": "skipped: an earlier bulk write to the ticket may still be running",
    "unreadable": "skipped: the re-read before writing could not parse the ticket (see quarantine)",
    "superseded": "skipped: an owed write dropped because a newer decision on the ticket replaces it",
    "confirmed_on_reread": "ok: the answer was lost (or a crash cut the request off); a re-read shows it",
    "not_found_on_reread": "not_applied: cut off, and a re-read shows no such change: sent again",
    "not_sent": "not_applied: push stopped before sending this request: sent by the retry or next run",
    "note_unverifiable": "unknown: a cut-off note on a ticket system whose notes cannot be listed",
    "bulk_failed": "failed: the bulk job reported this ticket as failed (see error)",
    "ValidationError": "failed: the ticket system rejected the values (400; error lists each field)",
    "GoneError": "failed: the ticket is spam or deleted (405)",
    "NotFoundError": "failed: no such ticket (404)",
    "ForbiddenError": "failed: the API key's agent may not change this ticket (403)",
    "UnknownLabelError": "failed: a value the ticket system does not know; nothing was sent",
}


def change_key(ticket_id: int, field_name: str, label: str | None, method: str) -> ChangeKey:
    """Identity of a change for idempotency: the same value to the same field the same way."""
    return (int(ticket_id), field_name, label, KIND[method])


def write_audit(
    lake: Lake, rows: list[dict[str, Any]], *, run_id: str, partition: datetime
) -> WrittenPart | None:
    """Append audit rows as a new part (never replacing an earlier one).

    Intents announce a batch of writes: first the run's lease on the lake is checked (fencing), so a
    run whose lease was lost stops before it sends anything more.
    """
    phase = rows[0]["phase"] if rows else "none"
    if phase == "intent":
        check_fence(lake, run_id)
    return lake.write("audit", rows, date=partition, run_id=run_id, name=f"{phase}-{uuid.uuid4().hex}")


def done_changes(lake: Lake, ticket_ids: Iterable[int]) -> set[ChangeKey]:
    """Changes to these tickets that an earlier (or this) run already made."""
    ids = sorted({int(i) for i in ticket_ids})
    if not ids:
        return set()
    rows = lake.scan(
        "audit",
        filter=(pc.field("phase") == "result")
        & pc.field("status").isin(list(DONE_STATUSES))
        & pc.field("ticket_id").isin(ids),
        columns=["ticket_id", "field", "label", "method"],
    ).to_pylist()
    return {change_key(r["ticket_id"], r["field"], r["label"], r["method"]) for r in rows}


def dangling_intents(lake: Lake) -> list[dict[str, Any]]:
    """Intent rows that never got a result (the run stopped between sending and recording)."""
    intents = lake.scan("audit", filter=pc.field("phase") == "intent").to_pylist()
    if not intents:
        return []
    results = lake.scan(
        "audit", filter=pc.field("phase") == "result", columns=["write_id", "ticket_id", "field"]
    ).to_pylist()
    resolved = {(r["write_id"], r["ticket_id"], r["field"]) for r in results}
    return [i for i in intents if (i["write_id"], i["ticket_id"], i["field"]) not in resolved]


def owed_results(lake: Lake, kind: str) -> list[dict[str, Any]]:
    """The latest result rows of ``kind`` changes (``write`` or ``note``) still owed.

    A change is owed while its latest result is ``not_applied``; an ``unresolved_write`` skip does
    not settle it (the earlier intent is still open), every other result does.
    """
    owed = lake.scan(
        "audit",
        filter=(pc.field("phase") == "result") & (pc.field("status") == "not_applied"),
        columns=["ticket_id"],
    ).column("ticket_id")
    if not len(owed):
        return []
    rows = lake.scan(
        "audit",
        filter=(pc.field("phase") == "result") & pc.field("ticket_id").isin(pc.unique(owed)),
    ).to_pylist()
    latest: dict[ChangeKey, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r["completed_at"]):
        if row["reason_code"] != "unresolved_write":
            latest[change_key(row["ticket_id"], row["field"], row["label"], row["method"])] = row
    return [row for key, row in latest.items() if row["status"] == "not_applied" and key[3] == kind]


@dataclass
class OwnWrites:
    """``updated_at`` values our successful writes produced, exactly or within a time span."""

    tolerance: timedelta
    exact: dict[int, set[datetime]] = field(default_factory=lambda: defaultdict(set))
    spans: dict[int, list[tuple[datetime, datetime]]] = field(default_factory=lambda: defaultdict(list))

    def matches(self, ticket_id: int, updated_at: datetime) -> bool:
        """Whether ``updated_at`` is the mark of one of our own writes to the ticket."""
        if updated_at in self.exact.get(ticket_id, ()):
            return True
        slack = self.tolerance
        return any(start - slack <= updated_at <= end + slack for start, end in self.spans.get(ticket_id, ()))


def own_writes(lake: Lake, *, since: datetime, tolerance: timedelta) -> OwnWrites:
    """Our successful writes that finished after ``since`` (minus the tolerance).

    A write that returned the ticket (a single update) is known by its exact ``updated_at``; bulk
    updates and notes by the span between sending and knowing the result.
    """
    found = OwnWrites(tolerance=tolerance)
    rows = lake.scan(
        "audit",
        filter=(pc.field("phase") == "result")
        & (pc.field("status") == "ok")
        & (pc.field("completed_at") >= since - tolerance),
        columns=["ticket_id", "ticket_updated_at", "sent_at", "completed_at"],
    ).to_pylist()
    for row in rows:
        if row["ticket_updated_at"] is not None:
            found.exact[row["ticket_id"]].add(row["ticket_updated_at"])
        elif row["sent_at"] is not None:
            found.spans[row["ticket_id"]].append((row["sent_at"], row["completed_at"]))
    return found
