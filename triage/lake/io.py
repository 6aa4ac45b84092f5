"""Atomic Parquet reads and writes on a local folder or any pyarrow filesystem (``s3://...``).

Layout: ``<root>/<table>/date=YYYY-MM-DD/run=<run_id>/<part>.parquet``. A part is written to a hidden
temporary name in its folder, then renamed into place, so a reader never sees half a file (pyarrow,
pandas and DuckDB skip names starting with a dot; on object storage the final object appears whole).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from triage.lake.schemas import schema

PARTITIONING = ds.partitioning(pa.schema([("date", pa.string()), ("run", pa.string())]), flavor="hive")


@dataclass(frozen=True)
class WrittenPart:
    """One Parquet file written to the lake."""

    table: str
    path: str
    rows: int


def partition_date(value: date | datetime | str) -> str:
    """The ``date=`` partition value (UTC calendar date) of a run."""
    if isinstance(value, str):
        return date.fromisoformat(value[:10]).isoformat()
    if isinstance(value, datetime):
        return value.date().isoformat() if value.tzinfo is None else value.astimezone(UTC).date().isoformat()
    return value.isoformat()


class Lake:
    """The Parquet lake at ``uri``: a local folder, or a URI pyarrow understands (``s3://bucket/x``)."""

    def __init__(self, uri: str | Path, *, filesystem: pafs.FileSystem | None = None) -> None:
        """``filesystem``, when given, is used as is and ``uri`` is the root path inside it."""
        text = str(uri)
        if filesystem is not None:
            self.fs, root = filesystem, text
        elif "://" in text:
            check_uri(text)
            self.fs, root = pafs.FileSystem.from_uri(text)
        else:
            self.fs, root = pafs.LocalFileSystem(), str(Path(text).expanduser().resolve())
        self.uri = text
        self.root = root.rstrip("/")

    def __repr__(self) -> str:
        return f"Lake({self.uri!r})"

    # -- paths ---------------------------------------------------------------------------------

    def table_dir(self, table: str) -> str:
        schema(table)  # validates the name
        return f"{self.root}/{table}"

    def partition_dir(self, table: str, *, date: date | datetime | str, run_id: str) -> str:
        return f"{self.table_dir(table)}/date={partition_date(date)}/run={run_id}"

    def url(self, path: str) -> str:
        """A link to ``path`` for people: ``file:///...`` locally, the filesystem's URI otherwise."""
        if isinstance(self.fs, pafs.LocalFileSystem):
            return Path(path).as_uri()
        return f"{self.fs.type_name}://{path}"

    # -- writing -------------------------------------------------------------------------------

    def write(
        self,
        table: str,
        data: pa.Table | Sequence[Mapping[str, Any]],
        *,
        date: date | datetime | str,
        run_id: str,
        name: str,
    ) -> WrittenPart | None:
        """Write ``data`` as ``<partition>/<name>.parquet`` atomically; ``None`` when there are no rows.

        Rows are validated against the table's schema: a missing column or a wrong type raises.
        Writing the same name again replaces the part (a retried stage rewrites its own output).
        """
        arrow = conform(table, data)
        if arrow.num_rows == 0:
            return None
        if set(arrow.column("run_id").unique().to_pylist()) != {run_id}:
            raise ValueError(f"{table}: every row must carry run_id={run_id!r}")
        folder = self.partition_dir(table, date=date, run_id=run_id)
        self.fs.create_dir(folder, recursive=True)
        final = f"{folder}/{name}.parquet"
        temp = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
        try:
            pq.write_table(arrow, temp, filesystem=self.fs, compression="zstd")
            self.fs.move(temp, final)
        except BaseException:
            _delete_quietly(self.fs, temp)
            raise
        return WrittenPart(table=table, path=final, rows=arrow.num_rows)

    def remove_parts(self, table: str, *, date: date | datetime | str, run_id: str, prefix: str) -> int:
        """Delete this partition's parts whose names start with ``prefix`` (a stage redoing its output)."""
        removed = 0
        for info in self._files(self.partition_dir(table, date=date, run_id=run_id)):
            if info.base_name.startswith(prefix):
                self.fs.delete_file(info.path)
                removed += 1
        return removed

    # -- reading -------------------------------------------------------------------------------

    def read_paths(self, table: str, paths: Sequence[str], *, columns: list[str] | None = None) -> pa.Table:
        """The rows of the given part files (as listed in a stage manifest)."""
        if not paths:
            return _empty(table, columns)
        dataset = ds.dataset(list(paths), schema=schema(table), filesystem=self.fs, format="parquet")
        return dataset.to_table(columns=columns)

    def read_partition(
        self, table: str, *, date: date | datetime | str, run_id: str, columns: list[str] | None = None
    ) -> pa.Table:
        """Every row one run wrote to ``table``."""
        files = [i.path for i in self._files(self.partition_dir(table, date=date, run_id=run_id))]
        return self.read_paths(table, files, columns=columns)

    def scan(
        self,
        table: str,
        *,
        filter: pc.Expression | None = None,
        columns: list[str] | None = None,
        dates: Sequence[str] | None = None,
    ) -> pa.Table:
        """Rows of ``table`` across runs, optionally only some ``date=`` partitions, filtered."""
        if dates is not None:
            files = [
                i.path
                for d in dates
                for run_dir in self._dirs(f"{self.table_dir(table)}/date={d}")
                for i in self._files(run_dir)
            ]
            dataset = ds.dataset(files, schema=schema(table), filesystem=self.fs, format="parquet")
        else:
            if not self._exists(self.table_dir(table)):
                return _empty(table, columns)
            dataset = ds.dataset(
                self.table_dir(table),
                schema=schema(table),
                filesystem=self.fs,
                format="parquet",
                partitioning=PARTITIONING,
            )
        return dataset.to_table(columns=columns, filter=filter)

    def dataset(self, table: str) -> ds.Dataset:
        """Every part of ``table`` as one dataset: its schema plus the ``date`` partition (a string, so a
        filter on it skips other days' folders); empty with that schema while nothing has been written."""
        full, folder = schema(table).append(pa.field("date", pa.string())), self.table_dir(table)
        if not self._exists(folder):
            return ds.dataset([], schema=full, filesystem=self.fs, format="parquet")
        return ds.dataset(
            folder, schema=full, filesystem=self.fs, format="parquet", partitioning=PARTITIONING
        )

    def dates(self, table: str) -> list[str]:
        """The table's ``date=`` partitions, newest first."""
        names = [Path(d).name for d in self._dirs(self.table_dir(table))]
        return sorted((n.removeprefix("date=") for n in names if n.startswith("date=")), reverse=True)

    # -- internals -----------------------------------------------------------------------------

    def _exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def _dirs(self, path: str) -> list[str]:
        if not self._exists(path):
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(path))
        return sorted(i.path for i in infos if i.type == pafs.FileType.Directory)

    def _files(self, path: str) -> list[pafs.FileInfo]:
        if not self._exists(path):
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(path))
        return sorted(
            (
                i
                for i in infos
                if i.type == pafs.FileType.File
                and i.base_name.endswith(".parquet")
                and not i.base_name.startswith(".")
            ),
            key=lambda i: i.path,
        )


def check_uri(uri: str) -> None:
    """Refuse an ``s3://`` URI that carries options or credentials (``?endpoint_override=``, ``key:secret@``).

    The endpoint, region and keys come from the standard AWS environment (``AWS_ENDPOINT_URL``,
    ``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` or ``AWS_PROFILE``), which pyarrow
    (the lake and its lease) and s3fs (Prefect's cached results) both read: given once, they cannot
    point the two at different servers, and a secret never lands in a log, an error or a Prefect block.
    """
    parts = urlsplit(uri)
    if parts.scheme == "s3" and (parts.query or "@" in parts.netloc):
        bucket = parts.netloc.rpartition("@")[2]
        raise ValueError(
            f"s3://{bucket}{parts.path}: put no options or credentials in the URI; set AWS_ENDPOINT_URL, "
            f"AWS_DEFAULT_REGION and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment"
        )


def conform(table: str, data: pa.Table | Sequence[Mapping[str, Any]]) -> pa.Table:
    """``data`` as an Arrow table with exactly the table's schema (columns in order, types cast)."""
    target = schema(table)
    if isinstance(data, pa.Table):
        missing = [n for n in target.names if n not in data.column_names]
        if missing:
            raise ValueError(f"{table}: missing columns {missing}")
        return data.select(target.names).cast(target)
    rows = list(data)
    for row in rows[:1]:
        unknown = set(row) - set(target.names)
        if unknown:
            raise ValueError(f"{table}: unknown columns {sorted(unknown)}")
    return pa.Table.from_pylist(rows, schema=target)


def _empty(table: str, columns: list[str] | None) -> pa.Table:
    empty = schema(table).empty_table()
    return empty.select(columns) if columns else empty


def _delete_quietly(fs: pafs.FileSystem, path: str) -> None:
    with contextlib.suppress(OSError):
        fs.delete_file(path)
