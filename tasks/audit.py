"""The audit trail as the idempotency record: what was written, what is unresolved, what was ours.

Push writes ``intent`` rows before sending a request and ``result`` rows after. From those:

- :func:`done_changes`: changes with an ``ok`` (or ``unknown``) result are never sent again;
- :func:`dangling_intents`: intents without a result were cut off (a crash, or an answer lost)
  and must be resolved by re-reading the ticket before anything else is sent;
- :func:`owed_results`: changes whose latest result is ``not_applied`` (cut off or never sent,
  and absent on re-read) are sent by the next push in their mode, whichever run decided them;
- :func:`own_writes`: which ``updated_at`` values our own writes produced, so the next extract does
  not re-triage tickets only because we changed them.

What a run reads of history is bounded (``bench/results/lake_year.md``). Compaction
(:mod:`triage.lake.compaction`, after every push and in the nightly flow) folds the parts it merges into a
small state of *open items*, ``<lake>/_state/audit_open.parquet`` (:func:`fold_open_items`): intents
without a result and changes whose latest result is ``not_applied``, however old. Dangling intents and
owed writes are that state plus the audit parts not merged yet (this run's, or a cut-off run's), never
the whole trail. The state is written before the merged file replaces the parts, so a part may be both
folded and still read on its own: both reads take the union, which that leaves unchanged.

Changes done to some tickets come from the *done index*, ``<lake>/_state/audit_done.parquet``
(:func:`index_done`, nightly): every change done, once, sorted by ``ticket_id`` in row groups whose
min/max let a lookup read only those holding the tickets asked about (pyarrow skips row groups for an
``isin`` of a few dozen values at most, so the row groups are chosen here), plus the audit files merged
since (today's). Our own recent writes come from the merged files whose name says they hold a
``completed_at`` that recent (:data:`triage.lake.compaction.NEWEST`), never opening older ones.
"""

from __future__ import annotations

import bisect
import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from triage.lake import Lake, WrittenPart
from triage.lake.compaction import OPEN_STATE, ROW_GROUP_ROWS, Merged, compact_table, newest_in
from triage.lake.io import COMPACTED_RUN, COVERS_KEY
from triage.lake.lease import check_fence
from triage.lake.tables.audit import AUDIT, AuditRow

#: Result statuses that count as done: never sent again.
DONE_STATUSES = ("ok", "unknown")
#: Audit method -> kind of change (a field write, or a suggestion in a note).
KIND = {"update": "write", "bulk_update": "write", "note": "note"}

ChangeKey = tuple[int, str, str | None, str]
#: Every change done in the merged audit files, sorted by ticket: what :func:`done_changes` looks up.
DONE_INDEX = "_state/audit_done.parquet"
_DONE_READ = ["phase", "status", "ticket_id", "field", "label", "method"]
_DONE_KEY = ("ticket_id", "field", "label", "kind")
_NEVER = datetime.min.replace(tzinfo=UTC)

#: Every audit reason code with what it means (docs/safe-writes.md's audit reason-code table is generated from this).
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


def write_audit(lake: Lake, rows: list[AuditRow], *, run_id: str, partition: datetime) -> WrittenPart | None:
    """Append audit rows as a new part (never replacing an earlier one).

    Intents announce a batch of writes: first the run's lease on the lake is checked (fencing), so a
    run whose lease was lost stops before it sends anything more.
    """
    phase = rows[0].phase if rows else "none"
    if phase == "intent":
        check_fence(lake, run_id)
    return AUDIT.write(lake, rows, date=partition, run_id=run_id, name=f"{phase}-{uuid.uuid4().hex}")


def done_changes(lake: Lake, ticket_ids: Iterable[int]) -> set[ChangeKey]:
    """Changes to these tickets that an earlier (or this) run already made: from the done index, and
    the audit files it does not cover yet (merged since the last night, parts not merged)."""
    ids = sorted({int(i) for i in ticket_ids})
    if not ids:
        return set()
    indexed, covered = _indexed_done(lake, ids)
    folder = lake.table_dir(AUDIT.name)
    rest = lake.scan(
        AUDIT.name,
        filter=pc.field("ticket_id").isin(ids),
        columns=_DONE_READ,
        files=lambda path: path[len(folder) + 1 :] not in covered,
    )
    rows = _done_rows(rest)
    return indexed | set(zip(*(rows.column(c).to_pylist() for c in _DONE_KEY), strict=True))


def index_done(lake: Lake) -> int:
    """Add the merged audit files the done index lacks to it (the nightly compaction, under the lease);
    how many files were added. The index holds every change done, once, sorted by ``ticket_id`` in
    small row groups, and names the merged files it covers (footer ``triage.covers``)."""
    folder = lake.table_dir(AUDIT.name)
    merged = {p[len(folder) + 1 :]: p for p in lake.files(AUDIT.name) if f"/run={COMPACTED_RUN}/" in p}
    index, covered = _done_index(lake)
    new = sorted(rel for rel in merged if rel not in covered)
    if not new:
        return 0
    added = _done_rows(lake.read_paths(AUDIT.name, [merged[rel] for rel in new], columns=_DONE_READ))
    keys = pa.concat_tables([index, added]).group_by(list(_DONE_KEY), use_threads=False).aggregate([])
    keys = keys.select(list(_DONE_KEY)).sort_by("ticket_id")
    covers = sorted((covered & merged.keys()) | set(new))
    keys = keys.replace_schema_metadata({COVERS_KEY: json.dumps(covers)})
    path = f"{lake.root}/{DONE_INDEX}"
    folder, name = path.rsplit("/", 1)
    temp = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
    lake.fs.create_dir(folder, recursive=True)
    pq.write_table(keys, temp, filesystem=lake.fs, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    lake.fs.move(temp, path)
    return len(new)


def dangling_intents(lake: Lake) -> list[AuditRow]:
    """Intent rows that never got a result (the run stopped between sending and recording)."""
    open_rows, unmerged = _open_and_unmerged(lake)
    results = unmerged.filter(pc.field("phase") == "result").select(["write_id", "ticket_id", "field"])
    resolved = set(zip(*(results.column(c).to_pylist() for c in results.column_names), strict=True))
    intents = AUDIT.rows(pa.concat_tables([open_rows, unmerged]).filter(pc.field("phase") == "intent"))
    dangling: dict[tuple[str, int, str], AuditRow] = {}
    for row in intents:
        key = (row.write_id, row.ticket_id, row.field)
        if key not in resolved:
            dangling.setdefault(key, row)
    return list(dangling.values())


def owed_results(lake: Lake, kind: str) -> list[AuditRow]:
    """The latest result rows of ``kind`` changes (``write`` or ``note``) still owed.

    A change is owed while its latest result is ``not_applied``; an ``unresolved_write`` skip does
    not settle it (the earlier intent is still open), every other result does.
    """
    open_rows, unmerged = _open_and_unmerged(lake)
    rows = AUDIT.rows(pa.concat_tables([open_rows, unmerged]).filter(pc.field("phase") == "result"))
    latest: dict[ChangeKey, AuditRow] = {}
    for row in sorted(rows, key=_completed_at):
        if row.reason_code != "unresolved_write":
            latest[change_key(row.ticket_id, row.field, row.label, row.method)] = row
    return [row for key, row in latest.items() if row.status == "not_applied" and key[3] == kind]


def _completed_at(row: AuditRow) -> datetime:
    return row.completed_at or _NEVER  # every result row has one


def open_items(rows: pa.Table) -> pa.Table:
    """The audit rows still open among ``rows``: intents without a result, and the latest result of each
    change (``unresolved_write`` skips aside) where that is ``not_applied``."""
    keys = ["write_id", "ticket_id", "field"]
    results = rows.filter(pc.field("phase") == "result")
    answered = results.select(keys).group_by(keys).aggregate([])
    intents = rows.filter(pc.field("phase") == "intent")
    unanswered = intents.join(answered, keys=keys, join_type="left anti").select(intents.column_names)
    settling = results.filter(
        pc.field("reason_code").is_null() | (pc.field("reason_code") != "unresolved_write")
    )
    settling = settling.take(pc.sort_indices(settling, [("completed_at", "ascending")]))
    kind = pc.if_else(pc.equal(settling.column("method"), "note"), "note", "write")
    indexed = settling.append_column("_kind", kind).append_column("_i", pa.array(range(settling.num_rows)))
    groups = indexed.group_by(["ticket_id", "field", "label", "_kind"], use_threads=False)
    latest = settling.take(groups.aggregate([("_i", "max")]).column("_i_max"))
    owed = latest.filter(pc.field("status") == "not_applied")
    return pa.concat_tables([unanswered.cast(AUDIT.schema), owed.cast(AUDIT.schema)])


def fold_open_items(lake: Lake, parts: list[str]) -> None:
    """Fold the audit ``parts`` a compaction is about to merge into the open-items state (atomically)."""
    if not parts:
        return
    rows = pa.concat_tables([_open_state(lake), lake.read_paths(AUDIT.name, parts)])
    path = f"{lake.root}/{OPEN_STATE}"
    folder, name = path.rsplit("/", 1)
    temp = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
    lake.fs.create_dir(folder, recursive=True)
    pq.write_table(open_items(rows), temp, filesystem=lake.fs, compression="zstd")
    lake.fs.move(temp, path)


def compact_audit(lake: Lake) -> list[Merged]:
    """Merge the audit parts (a run's, and any cut-off run's) into their dates' files, their open items
    folded into the state first: the next run's history reads stay bounded."""
    return compact_table(lake, AUDIT.name, before_merge=lambda parts: fold_open_items(lake, list(parts)))


def _done_rows(audit: pa.Table) -> pa.Table:
    """``ticket_id, field, label, kind`` of the done results among ``audit`` rows."""
    done = audit.filter((pc.field("phase") == "result") & pc.field("status").isin(list(DONE_STATUSES)))
    kind = pc.if_else(pc.equal(done.column("method"), "note"), "note", "write")
    return done.append_column("kind", kind).select(list(_DONE_KEY))


def _done_index(lake: Lake) -> tuple[pa.Table, set[str]]:
    """The whole done index and the merged files it covers (empty while there is none)."""
    try:
        index = pq.read_table(f"{lake.root}/{DONE_INDEX}", filesystem=lake.fs)
    except FileNotFoundError:
        return _done_rows(AUDIT.schema.empty_table()), set()
    return index, set(json.loads((index.schema.metadata or {}).get(COVERS_KEY, b"[]")))


def _indexed_done(lake: Lake, ids: list[int]) -> tuple[set[ChangeKey], set[str]]:
    """The done index's changes to these (sorted) tickets, reading only the row groups whose ticket range
    holds one of them; and the merged files the index covers."""
    try:
        index = pq.ParquetFile(lake.fs.open_input_file(f"{lake.root}/{DONE_INDEX}"))
    except FileNotFoundError:
        return set(), set()
    meta = index.metadata
    column = meta.schema.names.index("ticket_id")
    groups = []
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(column).statistics
        at = bisect.bisect_left(ids, stats.min)
        if at < len(ids) and ids[at] <= stats.max:
            groups.append(i)
    rows = index.read_row_groups(groups).filter(pc.field("ticket_id").isin(ids)) if groups else None
    found = set() if rows is None else set(zip(*(rows.column(c).to_pylist() for c in _DONE_KEY), strict=True))
    return found, set(json.loads((meta.metadata or {}).get(COVERS_KEY, b"[]")))


def _open_state(lake: Lake) -> pa.Table:
    try:
        return pq.read_table(f"{lake.root}/{OPEN_STATE}", filesystem=lake.fs, schema=AUDIT.schema)
    except FileNotFoundError:
        return AUDIT.schema.empty_table()


def _open_and_unmerged(lake: Lake) -> tuple[pa.Table, pa.Table]:
    """The open-items state, and the audit rows of parts no compaction has merged yet."""
    return _open_state(lake), lake.scan(AUDIT.name, files=lambda path: f"/run={COMPACTED_RUN}/" not in path)


@dataclass
class OwnWrites:
    """``updated_at`` values our successful writes produced, exactly or within a time span.

    Spans are of this machine's clock; ``clock_offset`` (the adapter's) says how far the ticket
    system's, which stamps ``updated_at``, is ahead of it.
    """

    tolerance: timedelta
    clock_offset: Callable[[], timedelta]
    exact: dict[int, set[datetime]] = field(default_factory=lambda: defaultdict(set))
    spans: dict[int, list[tuple[datetime, datetime]]] = field(default_factory=lambda: defaultdict(list))

    def matches(self, ticket_id: int, updated_at: datetime) -> bool:
        """Whether ``updated_at`` is the mark of one of our own writes to the ticket."""
        if updated_at in self.exact.get(ticket_id, ()):
            return True
        slack, ours = self.tolerance, updated_at - self.clock_offset()
        return any(start - slack <= ours <= end + slack for start, end in self.spans.get(ticket_id, ()))


def own_writes(
    lake: Lake,
    *,
    since: datetime,
    tolerance: timedelta,
    clock_offset: Callable[[], timedelta],
) -> OwnWrites:
    """Our successful writes that finished after ``since`` (minus the tolerance); ``clock_offset``: the
    adapter's (how far the ticket system's clock is ahead of ours).

    A write that returned the ticket (a single update) is known by its exact ``updated_at``; bulk
    updates and notes by the span between sending and knowing the result.
    """
    found = OwnWrites(tolerance=tolerance, clock_offset=clock_offset)
    start = since - tolerance
    rows = lake.scan(
        AUDIT.name,
        filter=(pc.field("phase") == "result")
        & (pc.field("status") == "ok")
        & (pc.field("completed_at") >= start),
        columns=["ticket_id", "ticket_updated_at", "sent_at", "completed_at"],
        files=lambda path: (newest_in(path) or start) >= start,  # merged files older than that, by name
    )
    for ticket_id, ticket_updated_at, sent_at, completed_at in zip(
        *(column.to_pylist() for column in rows.columns), strict=True
    ):
        if ticket_updated_at is not None:
            found.exact[ticket_id].add(ticket_updated_at)
        elif sent_at is not None:
            found.spans[ticket_id].append((sent_at, completed_at))
    return found
