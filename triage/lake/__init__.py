"""The Parquet lake: table schemas, atomic reads and writes, run records and the watermark."""

from triage.lake.io import Lake, WrittenPart, partition_date
from triage.lake.runs import Window, next_window, record_stage
from triage.lake.schemas import TABLES, describe, schema

__all__ = [
    "TABLES",
    "Lake",
    "Window",
    "WrittenPart",
    "describe",
    "next_window",
    "partition_date",
    "record_stage",
    "schema",
]
