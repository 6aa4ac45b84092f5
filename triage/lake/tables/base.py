"""A lake table as a row type: a frozen dataclass whose fields are the table's columns.

Each table module (:mod:`triage.lake.tables.tickets`, ``predictions``, ``decisions``, ``audit``,
``runs``, ``quarantine``, ``outcomes``) declares its row type with :func:`column` fields; :class:`Table`
builds the Arrow schema from it (name, type and nullability from the annotation, the ``doc`` from the
field), so the row type and the schema cannot drift, and the docs' column reference
(:func:`triage.lake.schemas.reference_markdown`) is generated from the same fields.

Why frozen dataclasses and not pydantic models: stages build rows by the thousand (a push writes one
audit row per change, predict one per ticket and field), and the lake's writer already checks every value
against the Arrow schema when it converts the batch (``pa.Table.from_pydict``): a validating model would
check each value a second time for nothing. A dataclass is a plain ``__init__``, type-checked by mypy
where it is built, and ``dataclasses.replace`` gives the copies push makes of an intent for its result.

Row types are what stages exchange and write. A stage that reads much of a table (history, look-ups
across runs) keeps reading it columnar with pyarrow (:meth:`triage.lake.io.Lake.scan` with ``columns=``
and ``filter=``); :meth:`Table.rows` is for bounded reads (a run's own parts, a few open items).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
_ARROW = "arrow"
_DOC = "doc"


@dataclass(frozen=True)
class WrittenPart:
    """One Parquet file written to the lake."""

    table: str
    path: str
    rows: int


class Lake(Protocol):
    """What a table needs of :class:`triage.lake.io.Lake` (a protocol: the lake's IO imports the tables)."""

    def write(
        self, table: str, data: pa.Table, *, date: date | datetime | str, run_id: str, name: str
    ) -> WrittenPart | None: ...

    def read_paths(
        self, table: str, paths: Sequence[str], *, columns: list[str] | None = None
    ) -> pa.Table: ...

    def read_partition(
        self, table: str, *, date: date | datetime | str, run_id: str, columns: list[str] | None = None
    ) -> pa.Table: ...


class TableName(StrEnum):
    """The lake's tables: the one place their names are spelt (a folder under the lake's root each)."""

    TICKETS = "tickets"
    PREDICTIONS = "predictions"
    DECISIONS = "decisions"
    AUDIT = "audit"
    RUNS = "runs"
    QUARANTINE = "quarantine"
    OUTCOMES = "outcomes"


def column(doc: str, arrow: pa.DataType | None = None, *, default: Any = dataclasses.MISSING) -> Any:
    """A column of a row type: its description for analysts, and its Arrow type where the annotation
    does not say it (``int32``, a list of structs). Nullable columns take ``default=None``."""
    return dataclasses.field(default=default, metadata={_DOC: doc, _ARROW: arrow})


RowT = TypeVar("RowT")


@typing.dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(column,))
def row_type(cls: type[RowT]) -> type[RowT]:
    """Make ``cls`` a row type: a frozen, slotted, keyword-only dataclass of :func:`column` fields."""
    return dataclasses.dataclass(frozen=True, slots=True, kw_only=True)(cls)


def run_id_column() -> Any:
    return column("The run that wrote the row (the Prefect flow-run id).")


_PLAIN: dict[Any, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    datetime: TS,
}


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """``(T, True)`` for ``T | None``, ``(hint, False)`` otherwise."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def _arrow_type(hint: Any, declared: pa.DataType | None, where: str) -> pa.DataType:
    if declared is not None:
        return declared
    if hint in _PLAIN:
        return _PLAIN[hint]
    if typing.get_origin(hint) is tuple:
        item, *rest = typing.get_args(hint)
        if rest == [Ellipsis] and item in _PLAIN:
            return pa.list_(_PLAIN[item])
    raise TypeError(f"{where}: no Arrow type for {hint!r}; give one to column()")


R = TypeVar("R")


class Table(Generic[R]):
    """One lake table: its name, its row type, its Arrow schema (built from the row type) and its doc."""

    def __init__(self, name: TableName, row: type[R], doc: str) -> None:
        if not dataclasses.is_dataclass(row):
            raise TypeError(f"{row!r} is not a dataclass")
        self.name, self.row, self.doc = name, row, doc
        hints = typing.get_type_hints(row)
        fields = []
        self._tuples: list[str] = []
        for f in dataclasses.fields(row):
            hint, nullable = _unwrap_optional(hints[f.name])
            where = f"{row.__name__}.{f.name}"
            if f.default is None and not nullable:
                raise TypeError(f"{where} defaults to None but its type does not allow it")
            if typing.get_origin(hint) is tuple:
                self._tuples.append(f.name)
            arrow = _arrow_type(hint, f.metadata.get(_ARROW), where)
            fields.append(pa.field(f.name, arrow, nullable=nullable, metadata={_DOC: f.metadata[_DOC]}))
        self.schema = pa.schema(fields)
        self.columns: tuple[str, ...] = tuple(self.schema.names)

    def __repr__(self) -> str:
        return f"Table({self.name.value!r})"

    def describe(self) -> list[tuple[str, str, str]]:
        """(column, Arrow type, description) for each column, for documentation."""
        return [(f.name, str(f.type), (f.metadata or {}).get(b"doc", b"").decode()) for f in self.schema]

    # -- rows <-> Arrow --------------------------------------------------------------------------

    def to_arrow(self, rows: Iterable[R]) -> pa.Table:
        """``rows`` as an Arrow table with exactly this schema (a wrong type raises here)."""
        batch = list(rows)
        for row in batch[:1]:
            if not isinstance(row, self.row):
                raise TypeError(f"{self.name}: expected {self.row.__name__} rows, got {type(row).__name__}")
        data = {name: [getattr(row, name) for row in batch] for name in self.columns}
        return pa.Table.from_pydict(data, schema=self.schema)

    def rows(self, table: pa.Table) -> list[R]:
        """The rows of ``table`` (every column of this table) as row types: for bounded reads only."""
        found = table.select(list(self.columns)).to_pylist()
        if self._tuples:
            for row in found:
                for name in self._tuples:
                    if row[name] is not None:
                        row[name] = tuple(row[name])
        return [self.row(**row) for row in found]

    # -- the lake ------------------------------------------------------------------------------

    def write(
        self, lake: Lake, rows: Sequence[R], *, date: date | datetime | str, run_id: str, name: str
    ) -> WrittenPart | None:
        """Write ``rows`` as one part of this run's partition (see :meth:`triage.lake.io.Lake.write`)."""
        return lake.write(self.name, self.to_arrow(rows), date=date, run_id=run_id, name=name)

    def read_paths(self, lake: Lake, paths: Sequence[str]) -> list[R]:
        """The rows of the given parts (a stage manifest's), as row types."""
        return self.rows(lake.read_paths(self.name, paths))

    def read_partition(self, lake: Lake, *, date: date | datetime | str, run_id: str) -> list[R]:
        """Every row one run wrote to this table, as row types."""
        return self.rows(lake.read_partition(self.name, date=date, run_id=run_id))
