"""The analysts' views over the lake, and a DuckDB connection on a lake with every table and view.

The tables keep every attempt (a retried run's rows, a write's failed and later results, each night's
outcomes); the views say what is true now: one row per run, per change and per ticket-field. Tables
reach DuckDB as pyarrow datasets (:meth:`triage.lake.io.Lake.dataset`), so a local or an ``s3://``
lake is read through pyarrow's filesystems and no DuckDB extension is ever downloaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from triage.lake.io import Lake
from triage.lake.schemas import TABLE_DOCS, TABLES
from triage.lake.tables import TableName


@dataclass(frozen=True)
class View:
    """A named SQL view: one line of doc, its columns, and the meaning of those not copied from a table."""

    name: str
    doc: str
    columns: tuple[str, ...]
    sql: str
    derived: Mapping[str, str] = field(default_factory=dict)


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

LATEST_CHANGES = View(
    name="latest_changes",
    doc="One row per change (ticket, field, value, kind): its latest result, so a write that failed "
    "and then succeeded is one `ok` row.",
    columns=_CHANGE_COLUMNS,
    derived=_CHANGE_DERIVED,
    sql="""
WITH open_intents AS (
    SELECT * FROM audit AS i
    WHERE phase = 'intent' AND NOT EXISTS (
        SELECT 1 FROM audit AS r
        WHERE r.phase = 'result' AND r.write_id = i.write_id AND r.ticket_id = i.ticket_id
          AND r.field = i.field
    )
), tries AS (
    SELECT *, CASE WHEN method = 'note' THEN 'note' ELSE 'write' END AS kind FROM audit WHERE phase = 'result'
    UNION ALL BY NAME
    SELECT *, CASE WHEN method = 'note' THEN 'note' ELSE 'write' END AS kind FROM open_intents
)
SELECT ticket_id, field, label, kind, status, reason_code, method, http_status, request_id, job_id, error,
       write_id, decision_run_id, run_id, model_version, snapshot_updated_at, ticket_updated_at, sent_at,
       completed_at,
       count(*) FILTER (WHERE phase = 'result') OVER (PARTITION BY ticket_id, field, label, kind) AS results,
       date
FROM tries
-- an `unresolved_write` skip settles nothing (an earlier request is still open): any other row wins
QUALIFY row_number() OVER (
    PARTITION BY ticket_id, field, label, kind
    ORDER BY reason_code IS NOT DISTINCT FROM 'unresolved_write', coalesce(completed_at, sent_at) DESC
) = 1
""",
)

FAILED_WRITES = View(
    name="failed_writes",
    doc="Changes whose latest result is not a success: `failed` (refused), `not_applied` (owed: the next "
    "push sends it), `unknown` (a cut-off note that cannot be checked).",
    columns=_CHANGE_COLUMNS,
    derived=_CHANGE_DERIVED,
    sql="SELECT * FROM latest_changes WHERE status IN ('failed', 'not_applied', 'unknown')",
)

LATEST_OUTCOMES = View(
    name="latest_outcomes",
    doc="One row per ticket and field: the latest run's outcome.",
    columns=(*TABLES[TableName.OUTCOMES].names, "date"),
    sql="""
WITH ends AS (SELECT run_id, max(finished_at) AS finished_at FROM runs GROUP BY run_id)
SELECT o.* FROM outcomes AS o LEFT JOIN ends AS e ON e.run_id = o.run_id
QUALIFY row_number() OVER (
    PARTITION BY o.ticket_id, o.field
    ORDER BY o.date DESC, e.finished_at DESC NULLS LAST, o.resolved_updated_at DESC
) = 1
""",
)

#: Every view, in the order they are created (a view may read those before it).
VIEWS: tuple[View, ...] = (LATEST_RUNS, LATEST_CHANGES, FAILED_WRITES, LATEST_OUTCOMES)


def connect(lake: Lake | str | Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with every lake table and view, in UTC, extensions never fetched.

    ``lake`` is a :class:`Lake` or its location (a folder, or ``s3://bucket/prefix`` with the AWS
    settings in the environment, as for the pipeline). Each query reads the lake as it is then.
    """
    lake = lake if isinstance(lake, Lake) else Lake(lake)
    con = duckdb.connect()
    con.execute("SET autoinstall_known_extensions = false; SET autoload_known_extensions = false")
    con.execute("SET TimeZone = 'UTC'")
    for table in TABLES:
        con.register(table, lake.dataset(table))
    for view in VIEWS:
        con.execute(f"CREATE TEMP VIEW {view.name} AS {view.sql}")
    return con


def catalog() -> list[tuple[str, str, str]]:
    """(kind, name, one line) of every table and view a connection holds."""
    tables = [("table", name, TABLE_DOCS[name]) for name in TABLES]
    return tables + [("view", view.name, view.doc) for view in VIEWS]


def views_markdown() -> str:
    """The views as Markdown (docs/lake.md's list is this text)."""
    lines: list[str] = []
    seen: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], str] = {}
    for view in VIEWS:
        first = seen.setdefault((view.columns, tuple(view.derived.items())), view.name)
        if first != view.name:
            lines.append(f"- **`{view.name}`**: {view.doc} Columns: as `{first}`.")
            continue
        named = ", ".join(f"`{c}`" for c in view.columns)
        lines.append(f"- **`{view.name}`**: {view.doc} Columns: {named}.")
        lines += [f"  - `{name}`: {meaning}." for name, meaning in view.derived.items()]
    return "\n".join(lines)
