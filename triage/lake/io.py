"""Atomic Parquet reads and writes on a local folder or any pyarrow filesystem (``s3://...``).

Layout: ``<root>/<table>/date=YYYY-MM-DD/run=<run_id>/<part>.parquet``; an account's lake is the folder
``account=<name>`` of the lake's root (``ticket_system.account``), and every part it writes carries the
account in an ``account`` column too (:data:`triage.lake.schemas.ACCOUNT`). A part is written to a hidden
temporary name in its folder, then renamed into place, so a reader never sees half a file (pyarrow,
pandas and DuckDB skip names starting with a dot; on object storage the final object appears whole).

Compaction (:mod:`triage.lake.compaction`) merges a date partition's parts into one file under
``run=compacted/`` whose footer lists the files it replaces (``triage.covers``); readers here skip a
covered file from the moment the merged one is in place, and a stage manifest's path that compaction
moved to ``<root>/_retained/`` is read from there.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from triage.lake.schemas import ACCOUNT, schema
from triage.lake.tables.base import WrittenPart

#: The ``run=`` folder of a date partition's merged file, and the footer key listing what it replaces.
COMPACTED_RUN = "compacted"
COVERS_KEY = b"triage.covers"
#: Where compaction moves the parts it replaced (outside every table's folder), until vacuum deletes them.
RETAINED = "_retained"
#: How long a scan lists again when a listed part moves away before it is read (a compaction in
#: between, moving one partition's parts after another's), and the pause between listings.
SCAN_RETRY_SECONDS = 30.0
SCAN_PAUSE_SECONDS = 0.05

PARTITIONING = ds.partitioning(pa.schema([("date", pa.string()), ("run", pa.string())]), flavor="hive")
#: The folder of an account's lake under the lake's root: ``account=<name>``.
ACCOUNT_PREFIX = f"{ACCOUNT.name}="


def partition_date(value: date | datetime | str) -> str:
    """The ``date=`` partition value (UTC calendar date) of a run."""
    if isinstance(value, str):
        return date.fromisoformat(value[:10]).isoformat()
    if isinstance(value, datetime):
        return value.date().isoformat() if value.tzinfo is None else value.astimezone(UTC).date().isoformat()
    return value.isoformat()


class Lake:
    """The Parquet lake at ``uri``: a local folder, or a URI pyarrow understands (``s3://bucket/x``).

    Its :attr:`account` is ``account``, else the name of its root folder ``account=<name>`` (None: a lake
    of one helpdesk, whose rows carry no account).
    """

    def __init__(
        self, uri: str | Path, *, filesystem: pafs.FileSystem | None = None, account: str | None = None
    ) -> None:
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
        folder = self.root.rsplit("/", 1)[-1]
        self.account = account or (
            folder.removeprefix(ACCOUNT_PREFIX) if folder.startswith(ACCOUNT_PREFIX) else None
        )

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
        arrow = self.stamped(arrow)
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

    def stamped(self, data: pa.Table) -> pa.Table:
        """``data`` (rows of one table) with this lake's account column, for a file written to it."""
        if self.account is None:
            return data
        return data.append_column(ACCOUNT, pa.array([self.account] * data.num_rows, pa.string()))

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
        """The rows of the given part files (as listed in a stage manifest; a part compaction replaced
        is read from ``_retained/``, so a retried run finds its stages' output)."""
        if not paths:
            return _empty(table, columns)
        found = [p if self._exists(p) else self.retained_path(p) for p in paths]
        dataset = ds.dataset(found, schema=schema(table), filesystem=self.fs, format="parquet")
        return dataset.to_table(columns=columns)

    def read_partition(
        self, table: str, *, date: date | datetime | str, run_id: str, columns: list[str] | None = None
    ) -> pa.Table:
        """Every row one run wrote to ``table`` (its parts, where they are now or retained after compaction)."""
        folder = self.partition_dir(table, date=date, run_id=run_id)
        files = [i.path for f in (folder, self.retained_path(folder)) for i in self._files(f)]
        return self.read_paths(table, files, columns=columns)

    def scan(
        self,
        table: str,
        *,
        filter: pc.Expression | None = None,
        columns: list[str] | None = None,
        dates: Sequence[str] | None = None,
        files: Callable[[str], bool] | None = None,
    ) -> pa.Table:
        """Rows of ``table`` across runs, optionally only some ``date=`` partitions or the files whose
        path ``files`` accepts, filtered.

        Row groups whose statistics rule the filter out are skipped (compacted files are sorted by
        ``ticket_id`` in small row groups, so a ``ticket_id`` filter reads little of them). A part that a
        compaction moves away between listing and reading is read again through the merged file.
        """

        def once() -> pa.Table:
            paths = [p for p in self.files(table, dates=dates) if files is None or files(p)]
            dataset = ds.dataset(paths, schema=schema(table), filesystem=self.fs, format="parquet")
            return dataset.to_table(columns=columns, filter=filter)

        deadline = time.monotonic() + SCAN_RETRY_SECONDS
        while True:
            try:
                return once()
            except FileNotFoundError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(SCAN_PAUSE_SECONDS)

    def files(self, table: str, *, dates: Sequence[str] | None = None) -> list[str]:
        """The table's current files (optionally of some ``date=`` partitions): parts and merged files,
        less any file a merged file in its partition replaces (a compaction cut off before its cleanup)."""
        folder = self.table_dir(table)
        folders = [f"{folder}/date={d}" for d in dates] if dates is not None else [folder]
        by_date: dict[str, list[str]] = {}
        for path in (i.path for f in folders for i in self._files(f, recursive=True)):
            by_date.setdefault(path[len(folder) + 1 :].split("/", 1)[0], []).append(path)
        current = []
        for paths in by_date.values():
            merged = [p for p in paths if f"/run={COMPACTED_RUN}/" in p]
            if merged and len(paths) > 1:
                replaced = {f"{folder}/{rel}" for p in merged for rel in self.covers(p)}
                paths = [p for p in paths if p not in replaced]
            current += paths
        return sorted(current)

    def covers(self, path: str) -> list[str]:
        """The files (relative to the table's folder) that the merged file at ``path`` replaces."""
        metadata = pq.read_metadata(path, filesystem=self.fs).metadata or {}
        return list(json.loads(metadata.get(COVERS_KEY, b"[]")))

    def retained_path(self, path: str) -> str:
        """Where compaction keeps the part at ``path`` (a path in the lake) until vacuum deletes it."""
        return f"{self.root}/{RETAINED}/{path[len(self.root) + 1 :]}"

    def dataset(self, table: str) -> ds.Dataset:
        """Every current file of ``table`` (:meth:`files`: none a merged file replaces) as one dataset: its
        schema plus the ``date`` partition (a string, so a filter on it skips other days' files); empty
        with that schema while nothing has been written."""
        full, folder = schema(table).append(pa.field("date", pa.string())), self.table_dir(table)
        return ds.dataset(
            self.files(table),
            schema=full,
            filesystem=self.fs,
            format="parquet",
            partitioning=PARTITIONING,
            partition_base_dir=folder,
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

    def _files(self, path: str, *, recursive: bool = False) -> list[pafs.FileInfo]:
        """Parquet files in ``path`` (and below, when ``recursive``), hidden names (``.``, ``_``) left out."""
        if not self._exists(path):
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(path, recursive=recursive))
        return sorted(
            (
                i
                for i in infos
                if i.type == pafs.FileType.File
                and i.base_name.endswith(".parquet")
                and not any(part.startswith((".", "_")) for part in i.path[len(path) + 1 :].split("/"))
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
