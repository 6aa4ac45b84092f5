"""The Parquet lake: its tables (one module each: row type, schema, reads and writes), atomic reads and
writes, run records and the watermark."""

from triage.lake.io import Lake, WrittenPart, partition_date
from triage.lake.runs import Window, next_window, record_stage
from triage.lake.schemas import TABLES, describe, schema
from triage.lake.tables import TableName

__all__ = [
    "TABLES",
    "Lake",
    "TableName",
    "Window",
    "WrittenPart",
    "describe",
    "next_window",
    "partition_date",
    "record_stage",
    "schema",
]
