"""``triage sql "<query>"``: DuckDB SQL over the lake's tables and analyst views (local or ``s3://``).

The connection is :func:`triage.lake.views.connect`'s: a local lake read by DuckDB's built-in Parquet
reader, an ``s3://`` one through pyarrow; no extension is downloaded, so the same queries run offline and
on object storage.
"""

from __future__ import annotations

import csv
import json
import sys
from datetime import date, datetime, time
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

import typer

from triage.cli.app import app
from triage.cli.options import ConfigOption, settings_or_exit


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


# A query may begin with a comment (`-- ...`): taken as the query, not as an unknown option.
@app.command("sql", context_settings={"ignore_unknown_options": True})
def sql_command(
    query: Annotated[str | None, typer.Argument(help="DuckDB SQL over the lake's tables and views.")] = None,
    config: ConfigOption = None,
    lake: Annotated[
        str | None, typer.Option("--lake", help="Lake folder or s3:// URI (default: pipeline.lake).")
    ] = None,
    output: Annotated[Format, typer.Option("--format", help="table (to read), csv or json.")] = Format.table,
    list_: Annotated[bool, typer.Option("--list", help="List the tables and views, then exit.")] = False,
) -> None:
    """Query the lake with SQL: the tables, and views that count each run, change and outcome once."""
    from triage.lake.views import catalog

    if list_:
        entries = catalog()
        width = max(len(name) for _, name, _ in entries)
        for kind, name, doc in entries:
            typer.echo(f"{kind:<5}  {name:<{width}}  {doc}")
        return
    if not query:
        typer.echo("give a query, or --list to see the tables and views", err=True)
        raise typer.Exit(2)
    columns, rows = _run(query, lake or settings_or_exit(config).pipeline.lake)
    if output is Format.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_text(v, escape=False) for v in row] for row in rows])
    elif output is Format.json:
        typer.echo(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=_json_value))
    else:
        typer.echo(_table(columns, rows))


def _run(query: str, location: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and rows of ``query`` on the lake at ``location``; exit 1 with one line on an error."""
    import duckdb
    import pyarrow as pa
    import pyarrow.fs as pafs

    from triage.lake.io import Lake
    from triage.lake.views import connect
    from triage.redaction import redact

    try:
        lake = Lake(location)
        if lake.fs.get_file_info(lake.root).type == pafs.FileType.NotFound:
            typer.echo(f"note: nothing at {location} yet: every table is empty", err=True)
        result = connect(lake).execute(query)
        columns = [d[0] for d in result.description or []]
        return columns, result.fetchall() if columns else []
    except (duckdb.Error, pa.ArrowException, OSError, ValueError) as exc:
        typer.echo(redact(f"error: {_one_line(str(exc))}"), err=True)
        raise typer.Exit(1) from None


def _one_line(message: str) -> str:
    """DuckDB's message without the caret drawing under the query: its lines joined."""
    head = message.split("\nLINE ", 1)[0]
    return " ".join(line.strip() for line in head.splitlines() if line.strip())


def _text(value: Any, *, escape: bool = True) -> str:
    """A cell: empty for null, times in ISO 8601, lists and structs as JSON; newlines escaped to keep
    a table row on one line."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        text = value.isoformat(sep=" ")
    elif isinstance(value, list | dict):
        text = json.dumps(value, default=_json_value)
    else:
        text = str(value)
    return text.replace("\n", "\\n") if escape else text


def _table(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    """Aligned columns with a header, then the row count."""
    cells = [[_text(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


def _json_value(value: Any) -> Any:
    """JSON for what ``json`` cannot write itself: times as ISO 8601, decimals as numbers."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)
