"""The lake: schema-checked atomic writes, hive layout readable by pandas and DuckDB, the watermark."""

from datetime import UTC, datetime, timedelta

import duckdb
import fsspec
import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from triage.lake import TABLES, Lake, Window, describe, next_window, record_stage
from triage.lake.runs import last_high_water_mark

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def quarantine_row(run_id="r1", ticket_id=1):
    return {
        "run_id": run_id,
        "stage": "extract",
        "ticket_id": ticket_id,
        "error": "bad",
        "raw_json": "{}",
        "quarantined_at": T0,
    }


def test_write_is_hive_partitioned_and_readable_by_pandas_and_duckdb(tmp_path):
    lake = Lake(tmp_path / "lake")
    part = lake.write(
        "quarantine", [quarantine_row(), quarantine_row(ticket_id=2)], date=T0, run_id="r1", name="p1"
    )
    assert part.rows == 2
    assert part.path.endswith("quarantine/date=2026-11-29/run=r1/p1.parquet")

    frame = pd.read_parquet(tmp_path / "lake" / "quarantine")
    assert sorted(frame["ticket_id"]) == [1, 2]
    assert set(frame["run"].astype(str)) == {"r1"} and set(frame["run_id"]) == {"r1"}
    rows = duckdb.sql(
        f"select date, run_id, ticket_id from read_parquet('{tmp_path}/lake/quarantine/*/*/*.parquet', "
        "hive_partitioning=true) order by ticket_id"
    ).fetchall()
    assert [r[2] for r in rows] == [1, 2] and str(rows[0][0]) == "2026-11-29"


def test_rows_are_checked_against_the_schema(tmp_path):
    lake = Lake(tmp_path)
    with pytest.raises(ValueError, match="unknown columns"):
        lake.write("quarantine", [{**quarantine_row(), "extra": 1}], date=T0, run_id="r1", name="p")
    with pytest.raises(ValueError, match="run_id='r2'"):
        lake.write("quarantine", [quarantine_row("r1")], date=T0, run_id="r2", name="p")
    with pytest.raises(KeyError, match="unknown lake table"):
        lake.write("nope", [quarantine_row()], date=T0, run_id="r1", name="p")
    assert lake.write("quarantine", [], date=T0, run_id="r1", name="p") is None
    assert not (tmp_path / "quarantine").exists() or not list((tmp_path / "quarantine").rglob("*.parquet"))


def test_a_failed_write_leaves_neither_a_part_nor_a_temp_file(tmp_path, monkeypatch):
    lake = Lake(tmp_path)
    lake.write("quarantine", [quarantine_row()], date=T0, run_id="r1", name="p")

    def broken(table, where, **kwargs):
        with open(where, "wb") as handle:  # half a file, then the disk "fails"
            handle.write(b"PAR1")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        lake.write("quarantine", [quarantine_row(ticket_id=9)], date=T0, run_id="r1", name="p")
    files = sorted(p.name for p in (tmp_path / "quarantine").rglob("*") if p.is_file())
    assert files == ["p.parquet"]  # the earlier part is intact, no temp file remains
    assert lake.read_partition("quarantine", date=T0, run_id="r1").column("ticket_id").to_pylist() == [1]


def test_rewriting_a_part_replaces_it_and_remove_parts_clears_a_stage(tmp_path):
    lake = Lake(tmp_path)
    lake.write("quarantine", [quarantine_row(ticket_id=1)], date=T0, run_id="r1", name="extract-00001")
    lake.write("quarantine", [quarantine_row(ticket_id=2)], date=T0, run_id="r1", name="extract-00001")
    lake.write("quarantine", [quarantine_row(ticket_id=3)], date=T0, run_id="r1", name="other")
    assert sorted(
        lake.read_partition("quarantine", date=T0, run_id="r1").column("ticket_id").to_pylist()
    ) == [2, 3]
    assert lake.remove_parts("quarantine", date=T0, run_id="r1", prefix="extract-") == 1
    assert lake.read_partition("quarantine", date=T0, run_id="r1").column("ticket_id").to_pylist() == [3]


def test_works_on_a_non_local_pyarrow_filesystem():
    memory = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem("memory")))
    lake = Lake("/lake-test", filesystem=memory)
    part = lake.write("quarantine", [quarantine_row()], date=T0, run_id="r1", name="p")
    assert lake.read_paths("quarantine", [part.path]).num_rows == 1
    assert lake.scan("quarantine").column("run_id").to_pylist() == ["r1"]
    assert lake.dates("quarantine") == ["2026-11-29"]


def test_scan_of_a_missing_table_is_empty_with_the_schema(tmp_path):
    table = Lake(tmp_path).scan("decisions")
    assert table.num_rows == 0 and table.schema.names == TABLES["decisions"].names


def test_every_table_has_run_id_and_every_column_is_documented():
    for name, table_schema in TABLES.items():
        assert table_schema.names[0] == "run_id", name
        assert all(doc for _, _, doc in describe(name)), name


def _complete(lake, run_id, end, source="watermark", status="ok", flow="triage"):
    window = Window(start=end - timedelta(hours=1), end=end, source=source)
    record_stage(
        lake,
        run_id=run_id,
        flow=flow,
        stage="run",
        status=status,
        started_at=end,
        window=window,
        partition=end,
        high_water_mark=end,
    )


def test_watermark_comes_from_the_latest_completed_incremental_run(tmp_path):
    lake = Lake(tmp_path)
    overlap, lookback = timedelta(minutes=2), timedelta(hours=24)
    first = next_window(lake, end=T0, overlap=overlap, initial_lookback=lookback)
    assert (first.start, first.end, first.source) == (T0 - lookback, T0, "initial")

    _complete(lake, "r1", T0, source="initial")
    _complete(lake, "r2", T0 + timedelta(hours=1), status="failed")  # failed: does not advance
    _complete(lake, "r3", T0 + timedelta(days=3), source="explicit")  # an operator's explicit window
    _complete(lake, "r4", T0 + timedelta(days=5), flow="backfill")  # another flow
    later = T0 + timedelta(hours=2)
    window = next_window(lake, end=later, overlap=overlap, initial_lookback=lookback)
    assert (window.start, window.end, window.source) == (T0 - overlap, later, "watermark")

    _complete(lake, "r5", T0 + timedelta(days=1, hours=1))  # a later date partition wins
    assert last_high_water_mark(lake) == T0 + timedelta(days=1, hours=1)


def _sample(arrow_type):
    """A value of ``arrow_type`` for a round trip."""
    import pyarrow as pa

    if pa.types.is_string(arrow_type):
        return "x"
    if pa.types.is_boolean(arrow_type):
        return True
    if pa.types.is_integer(arrow_type):
        return 7
    if pa.types.is_floating(arrow_type):
        return 0.5
    if pa.types.is_timestamp(arrow_type):
        return T0
    if pa.types.is_list(arrow_type):
        return (_sample(arrow_type.value_type),)
    if pa.types.is_struct(arrow_type):
        return {f.name: _sample(f.type) for f in arrow_type}
    raise AssertionError(arrow_type)


def test_each_table_module_owns_its_row_type_schema_and_name(tmp_path):
    """The schema is built from the row type: its columns are the row type's fields, in order; rows written
    through the table read back equal, nulls included."""
    import dataclasses

    from triage.lake import TableName
    from triage.lake.tables import TABLES as MODULES

    assert list(MODULES) == list(TableName) == list(TABLES)
    lake = Lake(tmp_path)
    for name, table in MODULES.items():
        assert [f.name for f in dataclasses.fields(table.row)] == table.schema.names, name
        assert TABLES[name] is table.schema and describe(name) == table.describe()
        full = table.row(**{f.name: _sample(f.type) for f in table.schema})
        sparse = table.row(**{f.name: _sample(f.type) for f in table.schema if not f.nullable})
        assert table.write(lake, [full, sparse], date=T0, run_id="x", name="p").rows == 2
        assert table.read_partition(lake, date=T0, run_id="x") == [full, sparse], name
        with pytest.raises(TypeError, match="expected"):
            table.write(lake, [dataclasses.asdict(full)], date=T0, run_id="x", name="p")


def test_the_stages_name_tables_by_their_modules_not_by_strings():
    """``lake.scan("audit")`` and the like: a table is named by its module (``AUDIT.name``) or
    ``TableName``, so a renamed table breaks where it is spelt, once."""
    import ast
    from pathlib import Path

    from triage.lake import TableName

    root = Path(__file__).resolve().parents[2]
    methods = {
        "write",
        "scan",
        "read_paths",
        "read_partition",
        "remove_parts",
        "files",
        "table_dir",
        "dataset",
    }
    found = []
    for folder in ("tasks", "flows", "triage/lake", "triage/cli"):
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in methods
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and node.args[0].value in set(TableName)
                ):
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not found, f"name these tables by their module (e.g. AUDIT.name from triage.lake.tables): {found}"
