"""The analysts' views over the lake, and a DuckDB connection on a lake with every table and view.

The tables keep every attempt (a retried run's rows, a write's failed and later results, each night's
outcomes); the views say what is true now: one row per run, per change and per ticket-field. Some are
table macros bounded by a time on the rows' own columns (``changes_since(ts)``: never the ``date``
partition, which a backfill or a retry makes differ from when rows were written): they open only the
files whose name says they may hold such times, and of those the row groups whose statistics do, so a
question about recent days costs the same whatever the lake's age (``bench/results/lake_year_queries.md``).

A local lake's tables are read by DuckDB's own Parquet reader (built in: 2-3.5x faster than a pyarrow
scan); an ``s3://`` lake's as pyarrow datasets, so no DuckDB extension is ever downloaded. Either way
only the files :meth:`triage.lake.io.Lake.files` lists (none a merged file replaces).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from triage.lake.compaction import OPEN_STATE, STAMP
from triage.lake.io import COMPACTED_RUN, PARTITIONING, Lake
from triage.lake.schemas import TABLE_DOCS, TABLES
from triage.lake.tables import TableName


@dataclass(frozen=True)
class View:
    """A named SQL view, or a table macro when it has ``params``: one line of doc, its columns, and the
    meaning of those not copied from a table."""

    name: str
    doc: str
    columns: tuple[str, ...]
    sql: str
    derived: Mapping[str, str] = field(default_factory=dict)
    params: tuple[str, ...] = ()

    @property
    def call(self) -> str:
        """How a query names it: ``latest_runs``, ``changes_since(ts)``."""
        return f"{self.name}({', '.join(self.params)})" if self.params else self.name

    def create(self) -> str:
        """The statement that creates it on a connection."""
        if self.params:
            return f"CREATE TEMP MACRO {self.call} AS TABLE {self.sql}"
        return f"CREATE TEMP VIEW {self.name} AS {self.sql}"


_CHANGE_COLUMNS = (
    "ticket_id",
    "field",
    "label",
    "kind",
    "status",
    "reason_code",
    "method",
    "http_status",
    "request_id",
    "job_id",
    "error",
    "write_id",
    "decision_run_id",
    "run_id",
    "model_version",
    "snapshot_updated_at",
    "ticket_updated_at",
    "sent_at",
    "completed_at",
    "results",
    "date",
)
_CHANGE_DERIVED = {
    "kind": "`write` (update, bulk_update) or `note`: with ticket_id, field and label, what identifies a change",
    "status": "the latest result's status, or `pending` for a request sent without a result yet (a push "
    "under way, or cut off: the next push resolves it)",
    "results": "how many result rows the change has had (more than 1 after a retry)",
    "date": "the `date` partition of the latest try's row: the run's window end, not when it happened "
    "(null for a pending request kept in the audit's open-items state)",
}

LATEST_RUNS = View(
    name="latest_runs",
    doc="One row per run: its latest attempt's outcome, how many attempts, its window and rows.",
    columns=(
        "run_id",
        "flow",
        "status",
        "attempts",
        "last_stage",
        "mode",
        "model_version",
        "window_start",
        "window_end",
        "window_source",
        "high_water_mark",
        "rows_in",
        "rows_out",
        "counts",
        "message",
        "parent_run_id",
        "started_at",
        "finished_at",
        "date",
    ),
    derived={
        "status": "`ok` or `failed` as the latest attempt ended; `unfinished` while that attempt has "
        "no `run` row (still running, or killed)",
        "attempts": "attempts of the flow run (2 and up after a retry)",
        "last_stage": "`run` once the latest attempt ended, else the last stage it recorded; rows, counts "
        "and message are that row's",
        "started_at": "start of the first attempt",
        "finished_at": "end of the latest row",
    },
    sql="""
WITH totals AS (
    SELECT run_id, max(coalesce(attempt, 1)) AS attempts, min(started_at) AS started_at
    FROM runs GROUP BY run_id
), latest AS (
    SELECT * FROM runs
    QUALIFY row_number() OVER (
        PARTITION BY run_id ORDER BY coalesce(attempt, 1) DESC, stage = 'run' DESC, finished_at DESC
    ) = 1
)
SELECT l.run_id, l.flow, CASE WHEN l.stage = 'run' THEN l.status ELSE 'unfinished' END AS status,
       t.attempts, l.stage AS last_stage, l.mode, l.model_version, l.window_start, l.window_end,
       l.window_source, l.high_water_mark, l.rows_in, l.rows_out, l.counts, l.message, l.parent_run_id,
       t.started_at, l.finished_at, l.date
FROM latest AS l JOIN totals AS t USING (run_id)
""",
)


#: Intents that never got a result: the open-items state (:data:`triage.lake.compaction.OPEN_STATE`, the
#: merged audit files' open intents) plus the intents of audit parts no compaction has merged yet, less
#: those a result in such a part answers: the same as :func:`triage.tasks.audit.dangling_intents`, without
#: reading the merged audit (a result is always merged with or after its intent).
_OPEN_INTENTS = """
SELECT * EXCLUDE (filename) FROM _audit_open AS i
WHERE phase = 'intent' AND NOT EXISTS (
    SELECT 1 FROM _audit_unmerged AS r
    WHERE r.phase = 'result' AND r.write_id = i.write_id AND r.ticket_id = i.ticket_id AND r.field = i.field
)
QUALIFY row_number() OVER (PARTITION BY write_id, ticket_id, field ORDER BY date NULLS LAST) = 1
"""
#: A try's own columns: a change's, less its count of results and its ``date``.
_TRY_COLUMNS = ", ".join(_CHANGE_COLUMNS[:-2])
_KIND = "CASE WHEN method = 'note' THEN 'note' ELSE 'write' END AS kind"
_CHANGE = "PARTITION BY ticket_id, field, label, kind"
#: The latest of a change's tries: an `unresolved_write` skip settles nothing (an earlier request is still
#: open), any other row wins.
_LATEST = (
    f"row_number() OVER ({_CHANGE} ORDER BY reason_code IS NOT DISTINCT FROM 'unresolved_write', "
    "coalesce(completed_at, sent_at) DESC) = 1"
)
_RESULTS = f"count(*) FILTER (WHERE phase = 'result') OVER ({_CHANGE}) AS results"


def _since(table: str, column: str) -> str:
    """The rows of ``table`` whose ``column`` is at or after the macro's ``ts``, read only from the files
    whose name says they may hold such a time (:func:`triage.lake.compaction.newest_in`)."""
    return f"SELECT * EXCLUDE (filename) FROM _{table} WHERE {column} >= ts AND _may_hold(filename, ts)"


CHANGES_SINCE = View(
    name="changes_since",
    params=("ts",),
    doc="One row per change tried at or after `ts` (a timestamp or a date, UTC): its latest result, so a "
    "write that failed and then succeeded is one `ok` row. A change decided at `ts` or later has every try "
    "since: `changes_since(current_date - 1)` is yesterday's changes' state, reading only recent files.",
    columns=_CHANGE_COLUMNS,
    derived={
        **_CHANGE_DERIVED,
        "results": "how many result rows the change has had since `ts` (more than 1 after a retry; an older "
        "try of the same change, decided again later, is not counted)",
    },
    sql=f"""
WITH tries AS (
    SELECT *, {_KIND} FROM ({_since(TableName.AUDIT, "completed_at")}) WHERE phase = 'result'
    UNION ALL BY NAME SELECT *, {_KIND} FROM _open_intents WHERE sent_at >= ts
)
SELECT {_TRY_COLUMNS}, {_RESULTS}, date
FROM tries QUALIFY {_LATEST}
""",
)

LATEST_CHANGES = View(
    name="latest_changes",
    doc="One row per change (ticket, field, value, kind) ever tried: its latest result (reads the whole "
    "audit: for recent changes, `changes_since` is as true and reads only their days).",
    columns=_CHANGE_COLUMNS,
    derived=_CHANGE_DERIVED,
    sql="SELECT * FROM changes_since('-infinity'::TIMESTAMPTZ)",
)

FAILED_WRITES = View(
    name="failed_writes",
    doc="Changes whose latest try is not a success: `failed` (refused), `not_applied` (owed: the next push "
    "sends it), `unknown` (a cut-off note that cannot be checked), `pending` (sent, no result yet: the next "
    "push resolves it).",
    columns=_CHANGE_COLUMNS,
    derived=_CHANGE_DERIVED,
    # The unsuccessful tries are a few per thousand. Every try of their changes is read only for what
    # orders them; where the latest is an unsuccessful one, its columns are read from those few.
    sql=f"""
WITH unsuccessful AS NOT MATERIALIZED (
    SELECT * EXCLUDE (filename), {_KIND} FROM _audit
    WHERE phase = 'result' AND status IN ('failed', 'not_applied', 'unknown')
    UNION ALL BY NAME SELECT *, {_KIND} FROM _open_intents
), tries AS (
    SELECT * FROM (
        SELECT ticket_id, field, label, {_KIND}, 'result' AS phase, reason_code, completed_at,
               NULL::TIMESTAMPTZ AS sent_at
        FROM audit WHERE phase = 'result'
    ) AS t
    SEMI JOIN (SELECT DISTINCT ticket_id, field, label, kind FROM unsuccessful) AS c
           ON c.ticket_id = t.ticket_id AND c.field = t.field AND c.label IS NOT DISTINCT FROM t.label
          AND c.kind = t.kind
    UNION ALL BY NAME
    SELECT ticket_id, field, label, {_KIND}, phase, reason_code, completed_at, sent_at FROM _open_intents
), latest AS (SELECT *, {_RESULTS} FROM tries QUALIFY {_LATEST})
SELECT {", ".join(f"u.{c}" for c in _CHANGE_COLUMNS[:-2])}, l.results, u.date
FROM latest AS l JOIN unsuccessful AS u
  ON u.ticket_id = l.ticket_id AND u.field = l.field AND u.label IS NOT DISTINCT FROM l.label
 AND u.kind = l.kind AND u.phase = l.phase AND u.completed_at IS NOT DISTINCT FROM l.completed_at
 AND u.sent_at IS NOT DISTINCT FROM coalesce(l.sent_at, u.sent_at)
""",
)

FAILED_WRITES_SINCE = View(
    name="failed_writes_since",
    params=("ts",),
    doc="As `failed_writes`, for the changes tried at or after `ts`: their latest try is since then, so "
    "this is their state, reading only recent files.",
    columns=_CHANGE_COLUMNS,
    derived=CHANGES_SINCE.derived,
    sql="SELECT * FROM changes_since(ts) WHERE status IN ('failed', 'not_applied', 'unknown', 'pending')",
)

_OUTCOMES = """
WITH ends AS (SELECT run_id, max(finished_at) AS finished_at FROM runs GROUP BY run_id)
SELECT o.* FROM ({outcomes}) AS o LEFT JOIN ends AS e ON e.run_id = o.run_id
QUALIFY row_number() OVER (
    PARTITION BY o.ticket_id, o.field
    ORDER BY o.date DESC, e.finished_at DESC NULLS LAST, o.resolved_updated_at DESC
) = 1
"""

LATEST_OUTCOMES = View(
    name="latest_outcomes",
    doc="One row per ticket and field: the latest run's outcome.",
    columns=(*TABLES[TableName.OUTCOMES].names, "date"),
    sql=_OUTCOMES.format(outcomes="SELECT * FROM outcomes"),
)

OUTCOMES_SINCE = View(
    name="outcomes_since",
    params=("ts",),
    doc="As `latest_outcomes`, for the tickets last resolved (`resolved_updated_at`) at or after `ts`: a "
    "later comparison of a ticket is always of the ticket as updated since, so this is their latest "
    "outcome, reading only recent files.",
    columns=LATEST_OUTCOMES.columns,
    sql=_OUTCOMES.format(outcomes=_since(TableName.OUTCOMES, "resolved_updated_at")),
)

DECISIONS_SINCE = View(
    name="decisions_since",
    params=("ts",),
    doc="The `decisions` made at or after `ts` (`decided_at`), reading only the files that may hold them "
    "(a filter on `decided_at` alone gives the same rows, opening every day's file).",
    columns=(*TABLES[TableName.DECISIONS].names, "date"),
    sql=_since(TableName.DECISIONS, "decided_at"),
)

#: Every view, in the order they are created (a view may read those before it).
VIEWS: tuple[View, ...] = (
    LATEST_RUNS,
    DECISIONS_SINCE,
    CHANGES_SINCE,
    LATEST_CHANGES,
    FAILED_WRITES,
    FAILED_WRITES_SINCE,
    LATEST_OUTCOMES,
    OUTCOMES_SINCE,
)


def connect(lake: Lake | str | Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with every lake table and view, in UTC, extensions never fetched.

    ``lake`` is a :class:`Lake` or its location (a folder, or ``s3://bucket/prefix`` with the AWS
    settings in the environment, as for the pipeline). Each query reads the lake's files as listed here.
    """
    lake = lake if isinstance(lake, Lake) else Lake(lake)
    con = duckdb.connect()
    con.execute("SET autoinstall_known_extensions = false; SET autoload_known_extensions = false")
    con.execute("SET TimeZone = 'UTC'; SET enable_progress_bar = false")
    # Whether the file at `path` may hold a time at or after `ts`: a merged file's name carries the newest
    # it holds (compared as text, which DuckDB evaluates on the file names alone, opening none it rules
    # out); a part's says nothing, nor does a dataset's (object storage: no name).
    con.execute(
        f"CREATE TEMP MACRO _may_hold(path, ts) AS path IS NULL OR path NOT LIKE '%/run={COMPACTED_RUN}/%' "
        f"OR split_part(parse_filename(path), '-', 2) >= strftime(ts::TIMESTAMPTZ, '{STAMP}')"
    )
    files = {table: lake.files(table) for table in TABLES}
    for table, paths in files.items():
        _register(con, lake, f"_{table}", table, paths)
        columns = ", ".join(f'"{c}"' for c in (*TABLES[table].names, "date"))
        con.execute(f"CREATE TEMP VIEW {table} AS SELECT {columns} FROM _{table}")
    unmerged = [p for p in files[TableName.AUDIT] if f"/run={COMPACTED_RUN}/" not in p]
    _register(con, lake, "_audit_unmerged", TableName.AUDIT, unmerged)
    state = f"{lake.root}/{OPEN_STATE}"
    found = lake.fs.get_file_info(state).type == pafs.FileType.File
    _register(con, lake, "_audit_open_state", TableName.AUDIT, [state] if found else [], partitioned=False)
    con.execute(
        "CREATE TEMP VIEW _audit_open AS "
        "SELECT * FROM _audit_open_state UNION ALL BY NAME SELECT * FROM _audit_unmerged"
    )
    con.execute(f"CREATE TEMP VIEW _open_intents AS {_OPEN_INTENTS}")
    for view in VIEWS:
        con.execute(view.create())
    return con


def _register(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    name: str,
    table: str,
    files: list[str],
    *,
    partitioned: bool = True,
) -> None:
    """``name``: the rows of ``table`` in ``files``, with every column of its schema (null where a file
    written before the column existed lacks it; none while there is no file), the ``date`` partition as
    a string (null for files outside the partitions) and the ``filename`` (null on object storage)."""
    full = TABLES[table].append(pa.field("date", pa.string()))
    columns = ", ".join(f'"{c}"' for c in full.names)  # not `run`
    if not isinstance(lake.fs, pafs.LocalFileSystem):
        layout = {"partitioning": PARTITIONING, "partition_base_dir": lake.table_dir(table)}
        dataset = ds.dataset(
            files, schema=full, filesystem=lake.fs, format="parquet", **(layout if partitioned else {})
        )
        con.register(f"{name}_dataset", dataset)
        con.execute(f"CREATE TEMP VIEW {name} AS SELECT *, NULL::VARCHAR AS filename FROM {name}_dataset")
        return
    con.register(f"{name}_schema", full.empty_table())
    if not files:
        con.execute(f"CREATE TEMP VIEW {name} AS SELECT *, NULL::VARCHAR AS filename FROM {name}_schema")
        return
    listed = ", ".join(_literal(path) for path in files)
    hive = "hive_types = {'date': 'VARCHAR', 'run': 'VARCHAR'}, hive_types_autocast = false"
    options = f"hive_partitioning = true, {hive}" if partitioned else "hive_partitioning = false"
    if _current(lake, table, files):  # bound to the schema: no file is opened before the query
        types = [row[:2] for row in con.execute(f"DESCRIBE {name}_schema").fetchall() if row[0] != "date"]
        types += [("date", "VARCHAR"), ("run", "VARCHAR")] if partitioned else []
        fields = ", ".join(f"{_literal(c)}: {_literal(t)}" for c, t in types)
        scan = f"read_parquet([{listed}], {options}, bound_schema = {{{fields}}})"
        if partitioned:
            con.execute(f"CREATE TEMP VIEW {name} AS SELECT {columns}, filename FROM {scan}")
            return
    else:  # files without some columns: every file's schema is read, the missing columns are null
        scan = f"read_parquet([{listed}], {options}, union_by_name = true)"
    con.execute(
        f"CREATE TEMP VIEW {name} AS SELECT {columns}, filename FROM "
        f"(SELECT *, NULL::VARCHAR AS filename FROM {name}_schema UNION ALL BY NAME SELECT *, filename FROM {scan})"
    )


def _current(lake: Lake, table: str, files: list[str]) -> bool:
    """Whether every file has every column of ``table``'s schema: the least recently written one has.

    Each file is written with the schema of the version that wrote it, and versions only add columns, so
    one footer answers for all (:meth:`triage.lake.io.Lake.files` lists the files, with no footer read).
    """
    infos = lake.fs.get_file_info(files)
    oldest = min(infos, key=lambda info: info.mtime_ns or 0).path
    return set(TABLES[table].names) <= set(pq.read_schema(oldest, filesystem=lake.fs).names)


def _literal(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def catalog() -> list[tuple[str, str, str]]:
    """(kind, name, one line) of every table and view a connection holds."""
    tables = [("table", name, TABLE_DOCS[name]) for name in TABLES]
    return tables + [("view", view.call, view.doc) for view in VIEWS]


def views_markdown() -> str:
    """The views as Markdown (docs/lake.md's list is this text)."""
    lines: list[str] = []
    seen: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], str] = {}
    for view in VIEWS:
        first = seen.setdefault((view.columns, tuple(view.derived.items())), view.name)
        if first != view.name:
            lines.append(f"- **`{view.call}`**: {view.doc} Columns: as `{first}`.")
            continue
        named = ", ".join(f"`{c}`" for c in view.columns)
        lines.append(f"- **`{view.call}`**: {view.doc} Columns: {named}.")
        lines += [f"  - `{name}`: {meaning}." for name, meaning in view.derived.items()]
    return "\n".join(lines)
