"""Compaction and vacuum: a date partition's many small parts become one file, sorted, with statistics.

Every stage writes parts (push two per batch of writes: 66 files for an hourly run of 1,000 writes), and
a read over ``n`` small files pays about a millisecond each before it reads a row. :func:`compact_table`
merges every date partition that holds parts into one file
``<table>/date=D/run=compacted/<table>-<newest>-<id>.parquet``, sorted by ``ticket_id`` (the audit by
phase, then ``ticket_id``; ``runs`` by ``started_at``) in row groups of :data:`ROW_GROUP_ROWS` rows with
min/max statistics, and named by the newest time it holds (:data:`NEWEST`). A read of recent rows skips
older files by name; a filter on a time or on a few tickets skips the row groups the statistics rule out
(pyarrow prunes an ``isin`` of a few dozen values at most: the audit's look-up of a run's tickets goes
through its done index, :func:`triage.tasks.audit.done_changes`). A partition that gets new parts later (the
current day; a backfill writing an old window's date now) is merged again with its merged file.

Order of work, safe to stop anywhere (readers go through :meth:`triage.lake.io.Lake.files`):

1. ``before_merge(parts)``, when given: the audit's open items are folded into their state file
   (:func:`triage.tasks.audit.fold_open_items`) before the parts stop being read on their own;
2. the merged file is written under a hidden name and renamed into place; its footer lists the files it
   replaces (``triage.covers``), which readers skip from that moment: nothing is read twice or missed;
3. the replaced parts move to ``<lake>/_retained/`` (outside the tables' folders), where a run retried
   from the Prefect UI still reads its stages' outputs by the paths in their manifests; replaced merged
   files are deleted. A compaction cut off before this step finishes it the next time.

Parts that a retried stage would replace by name (:data:`REPLACED_ON_RETRY`: extract, predict, decide,
outcomes) are merged only once older than ``pipeline.retain_parts_days`` (the retry horizon, longer than
Prefect keeps cached stage results): until then a retry replaces them as before.

Readers that glob the folders themselves (DuckDB's ``read_parquet('lake/audit/*/*/*.parquet')``) may see
a partition's rows twice for the moment between steps 2 and 3 (milliseconds a partition); the lake's own
readers and the datasets it hands out never do. :func:`vacuum` deletes retained parts after
``pipeline.retain_parts_days``.

Why not Delta Lake (yet): its log gives the same atomic swap, vacuum and file statistics, but on this
audit (``bench/results/lake_year.md``) a Delta table read the look-up of a run's 1,000 tickets slower than
plain merged files (0.77 s vs 0.38 s on 30 days: the same ``isin`` limit) and keeps no open items; the
bounded reads need the sorted files, the open-items state and the done index, which carry over to a
Delta table unchanged. Moving the lake (and the tests that use its hive layout) is a change of its own.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from triage.lake.io import COMPACTED_RUN, COVERS_KEY, RETAINED, Lake
from triage.lake.schemas import TABLES
from triage.lake.tables import TableName

#: Rows per row group of a merged file: small enough that a filter on a few tickets skips most data.
ROW_GROUP_ROWS = 4096
#: The columns a table's merged file is sorted by (``ticket_id`` where the table has one).
SORT_KEYS: dict[str, tuple[str, ...]] = {
    TableName.AUDIT: ("phase", "ticket_id"),
    TableName.RUNS: ("started_at",),
    TableName.QUARANTINE: ("quarantined_at",),
}
#: A column whose values never share a row group: an intent's ``completed_at`` is null, and a row group
#: holding nulls and values is never skipped by a ``completed_at`` filter (:func:`triage.tasks.audit.own_writes`).
SPLIT_BY: dict[str, str] = {TableName.AUDIT: "phase"}
#: The column whose newest value a merged file's name carries (``<table>-<newest>-<id>.parquet``): a read
#: of recent rows skips older files by name, without opening them (the audit's own writes; the analysts'
#: ``decisions_since``, ``changes_since``, ``outcomes_since``). Other tables: the time of merging, which is
#: as safe a bound for their times (all before it), if a looser one.
NEWEST: dict[str, str] = {
    TableName.AUDIT: "completed_at",
    TableName.RUNS: "finished_at",
    TableName.DECISIONS: "decided_at",
    TableName.OUTCOMES: "resolved_updated_at",
}
STAMP = "%Y%m%dT%H%M%S%f"
#: The audit's open items (intents without a result, changes whose latest result is ``not_applied``) of the
#: merged audit files, in the lake: kept by :func:`triage.tasks.audit.fold_open_items` before each merge.
OPEN_STATE = "_state/audit_open.parquet"
#: Tables whose stages replace their own parts when a run is retried (by name, in their own partition):
#: merged only once older than the retry horizon, so a retried stage never adds rows beside merged ones.
#: The audit and ``runs`` only ever get new parts, so they are merged at once.
REPLACED_ON_RETRY = frozenset(
    {TableName.TICKETS, TableName.QUARANTINE, TableName.PREDICTIONS, TableName.DECISIONS, TableName.OUTCOMES}
)


@dataclass(frozen=True)
class Merged:
    """One date partition merged: how many files became one, and its rows."""

    table: str
    date: str
    files: int
    rows: int
    path: str


def compact_table(
    lake: Lake,
    table: str,
    *,
    written_before: datetime | None = None,
    before_merge: Callable[[Sequence[str]], None] | None = None,
) -> list[Merged]:
    """Merge each date partition of ``table`` that holds parts (written before ``written_before``, when
    given) into one sorted file (see the module)."""
    folder = lake.table_dir(table)
    listed = lake._files(folder, recursive=True)
    current = set(lake.files(table))
    _retire(lake, [i.path for i in listed if i.path not in current])  # a cut-off compaction's leftovers
    ripe = {
        i.path
        for i in listed
        if i.path in current
        and (written_before is None or (i.mtime is not None and i.mtime < written_before))
    }
    by_date: dict[str, list[str]] = {}
    for path in sorted(p for p in current if _merged(p) or p in ripe):
        by_date.setdefault(path[len(folder) + 1 :].split("/", 1)[0], []).append(path)
    todo = {d: paths for d, paths in by_date.items() if any(not _merged(p) for p in paths) or len(paths) > 1}
    if before_merge is not None:
        before_merge([p for paths in todo.values() for p in paths if not _merged(p)])
    done = []
    for date_dir, paths in sorted(todo.items()):
        done.append(_merge(lake, table, folder, date_dir, paths))
        _retire(lake, paths)
    return done


def compact_lake(
    lake: Lake,
    *,
    settled_before: datetime,
    before_merge: dict[str, Callable[[Sequence[str]], None]] | None = None,
) -> list[Merged]:
    """:func:`compact_table` for every table (``before_merge`` per table name); parts of the tables in
    :data:`REPLACED_ON_RETRY` only once written before ``settled_before``."""
    hooks = before_merge or {}
    return [
        m
        for table in TABLES
        for m in compact_table(
            lake,
            table,
            written_before=settled_before if table in REPLACED_ON_RETRY else None,
            before_merge=hooks.get(table),
        )
    ]


def vacuum(lake: Lake, *, older_than: datetime) -> int:
    """Delete retained parts last written before ``older_than``; how many were deleted."""
    folder = f"{lake.root}/{RETAINED}"
    if lake.fs.get_file_info(folder).type == pafs.FileType.NotFound:
        return 0
    infos = lake.fs.get_file_info(pafs.FileSelector(folder, recursive=True))
    old = [
        i.path for i in infos if i.type == pafs.FileType.File and i.mtime is not None and i.mtime < older_than
    ]
    for path in old:
        lake.fs.delete_file(path)
    return len(old)


def summary(merged: Sequence[Merged]) -> str:
    """One line for the log: files merged into how many per table."""
    if not merged:
        return "compaction: nothing to merge"
    tables: dict[str, list[Merged]] = {}
    for m in merged:
        tables.setdefault(m.table, []).append(m)
    parts = [
        f"{t}: {sum(m.files for m in ms)} files into {len(ms)} ({sum(m.rows for m in ms)} rows, "
        f"{min(m.date for m in ms)}..{max(m.date for m in ms)})"
        for t, ms in tables.items()
    ]
    return "compaction: " + "; ".join(parts)


def newest_in(path: str) -> datetime | None:
    """The newest time a merged file holds (its name's stamp, see :data:`NEWEST`); ``None`` for a part."""
    if not _merged(path):
        return None
    return datetime.strptime(path.rsplit("/", 1)[1].split("-")[1], STAMP).replace(tzinfo=UTC)


def _merged(path: str) -> bool:
    return f"/run={COMPACTED_RUN}/" in path


def _merge(lake: Lake, table: str, folder: str, date_dir: str, paths: list[str]) -> Merged:
    data = lake.stamped(lake.read_paths(table, paths))
    keys = SORT_KEYS.get(table, ("ticket_id",))
    data = data.take(pc.sort_indices(data, [(key, "ascending") for key in keys]))
    covers = [p[len(folder) + 1 :] for p in paths]
    data = data.replace_schema_metadata({**(data.schema.metadata or {}), COVERS_KEY: json.dumps(covers)})
    target = f"{folder}/{date_dir}/run={COMPACTED_RUN}"
    lake.fs.create_dir(target, recursive=True)
    newest = pc.max(data.column(NEWEST[table])).as_py() if table in NEWEST else datetime.now(UTC)
    name = f"{table}-{(newest or datetime.min).strftime(STAMP)}-{uuid.uuid4().hex[:8]}"
    final, temp = f"{target}/{name}.parquet", f"{target}/.{name}.tmp"
    try:
        with pq.ParquetWriter(temp, data.schema, filesystem=lake.fs, compression="zstd") as writer:
            split = SPLIT_BY.get(table)
            values = pc.unique(data.column(split)).to_pylist() if split else [None]
            for value in values:
                chunk = data.filter(pc.field(split) == value) if split else data
                writer.write_table(chunk, row_group_size=ROW_GROUP_ROWS)
        lake.fs.move(temp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            lake.fs.delete_file(temp)
        raise
    return Merged(table, date_dir.removeprefix("date="), len(paths), data.num_rows, final)


def _retire(lake: Lake, paths: Sequence[str]) -> None:
    """Move replaced parts to ``_retained/``; delete replaced merged files (no manifest names them)."""
    for path in paths:
        if _merged(path):
            lake.fs.delete_file(path)
            continue
        kept = lake.retained_path(path)
        lake.fs.create_dir(kept.rsplit("/", 1)[0], recursive=True)
        lake.fs.move(path, kept)
