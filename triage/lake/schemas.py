"""The registry of the lake's tables: every table's Arrow schema by name, and the docs' column reference.

Each table's columns are declared once, as its row type in :mod:`triage.lake.tables` (one module per
table); the schemas here are built from those types. Writers validate against them, and the docs' table
reference (docs/lake.md) is generated from their ``doc`` metadata (:func:`reference_markdown`).

Every table is hive-partitioned ``<table>/date=YYYY-MM-DD/run=<run_id>/*.parquet``: ``date`` is the UTC
date of the run's window end and ``run`` repeats ``run_id`` (which every row also carries). An account's
lake (``ticket_system.account``) is ``<root>/account=<name>``, and every file it writes also has the
:data:`ACCOUNT` column.
"""

from __future__ import annotations

import pyarrow as pa

from triage.lake.tables import TABLES as _TABLES
from triage.lake.tables import TOP_K, TS, TableName

#: Every table's schema by name, in the order of the docs' column reference.
TABLES: dict[str, pa.Schema] = {name: table.schema for name, table in _TABLES.items()}

#: The column every row of an account's lake carries besides its table's own (:meth:`triage.lake.io.Lake.write`);
#: the row types and the lake's readers leave it out.
ACCOUNT = pa.field(
    "account",
    pa.string(),
    nullable=False,
    metadata={
        "doc": "The helpdesk (`ticket_system.account`) whose lake holds the row; also its `account=` folder."
    },
)

#: One line per table, for ``triage sql --list``.
TABLE_DOCS: dict[str, str] = {name: table.doc for name, table in _TABLES.items()}

__all__ = [
    "ACCOUNT",
    "TABLES",
    "TABLE_DOCS",
    "TOP_K",
    "TS",
    "TableName",
    "describe",
    "reference_markdown",
    "schema",
]


def schema(table: str) -> pa.Schema:
    """The schema of ``table``; :class:`KeyError` naming the known tables otherwise."""
    try:
        return TABLES[table]  # a TableName is a str: a plain name finds it
    except KeyError:
        raise KeyError(f"unknown lake table {table!r} (known: {', '.join(TABLES)})") from None


def describe(table: str) -> list[tuple[str, str, str]]:
    """(column, Arrow type, description) for each column of ``table``, for documentation."""
    schema(table)
    return _TABLES[table].describe()


def reference_markdown() -> str:
    """The column reference of every table, as Markdown (docs/lake.md's column reference is this text)."""
    parts = []
    for table in TABLES:
        parts += [f"#### `{table}`", "", "| column | type | meaning |", "|---|---|---|"]
        parts += [f"| `{name}` | {type_} | {doc} |" for name, type_, doc in describe(table)]
        parts.append("")
    parts += [
        "#### Every table of an account's lake",
        "",
        "| column | type | meaning |",
        "|---|---|---|",
        f"| `{ACCOUNT.name}` | {ACCOUNT.type} | {(ACCOUNT.metadata or {})[b'doc'].decode()} |",
        "",
    ]
    return "\n".join(parts)
