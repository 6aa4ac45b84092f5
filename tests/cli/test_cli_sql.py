"""``triage sql``: the lake's tables and views from the command line, for people and for machines."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from triage.cli import app
from triage.lake import Lake, Window, record_stage
from triage.lake.schemas import TABLE_DOCS
from triage.lake.views import VIEWS

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
RUNS = "SELECT run_id, status, attempts, window_end FROM latest_runs ORDER BY run_id"


@pytest.fixture
def lake(tmp_path) -> Path:
    """A lake with one run retried once (failed, then ok) and one that went through at once."""
    folder = tmp_path / "lake"
    window = Window(start=T0 - timedelta(hours=1), end=T0, source="watermark")
    for run_id, attempt, status in [("run-a", 1, "failed"), ("run-a", 2, "ok"), ("run-b", 1, "ok")]:
        record_stage(
            Lake(folder),
            run_id=run_id,
            flow="triage",
            stage="run",
            status=status,
            started_at=T0 + timedelta(minutes=attempt),
            window=window,
            partition=T0,
            attempt=attempt,
        )
    return folder


def sql(*args: str) -> object:
    return CliRunner().invoke(app, ["sql", *args])


def test_a_fresh_lake_answers_with_no_rows_instead_of_an_error(tmp_path):
    result = sql("--lake", str(tmp_path / "new"), "SELECT count(*) AS n FROM failed_writes")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["n", "-", "0", "(1 row)"]
    assert "every table is empty" in result.stderr


def test_the_lake_comes_from_the_configs_pipeline_lake(lake, tmp_path):
    config = tmp_path / "triage.yml"
    config.write_text(f"pipeline:\n  lake: {lake}\n")
    result = sql("--config", str(config), RUNS)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["run_id", "status", "attempts", "window_end"]
    assert lines[2].split() == ["run-a", "ok", "2", "2026-11-28", "09:00:00+00:00"]
    assert lines[-1] == "(2 rows)"


def test_a_bad_query_is_one_line_and_exit_1(lake):
    for query in (
        "SELECT * FROM no_such_table",
        "SELEC 1",
        "SELECT CAST('x' AS INTEGER)",
        "SELECT nope FROM runs",
    ):
        result = sql("--lake", str(lake), query)
        assert result.exit_code == 1, (query, result.output)
        assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, query
        assert "Traceback" not in result.output and not result.stdout


def test_a_query_may_begin_with_a_comment(lake):
    result = sql(
        "--lake", str(lake), "-- how many runs\nSELECT count(*) AS n FROM latest_runs", "--format", "csv"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["n", "2"]


def test_csv_and_json_are_for_machines(lake):
    as_csv = sql("--lake", str(lake), "--format", "csv", RUNS)
    assert as_csv.exit_code == 0, as_csv.output
    assert list(csv.reader(io.StringIO(as_csv.stdout))) == [
        ["run_id", "status", "attempts", "window_end"],
        ["run-a", "ok", "2", "2026-11-28 09:00:00+00:00"],
        ["run-b", "ok", "1", "2026-11-28 09:00:00+00:00"],
    ]
    as_json = sql("--lake", str(lake), "--format", "json", RUNS)
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == [
        {"run_id": "run-a", "status": "ok", "attempts": 2, "window_end": "2026-11-28T09:00:00+00:00"},
        {"run_id": "run-b", "status": "ok", "attempts": 1, "window_end": "2026-11-28T09:00:00+00:00"},
    ]


def test_list_names_every_table_and_view_with_its_doc():
    result = sql("--list")
    assert result.exit_code == 0, result.output
    for name, doc in [*TABLE_DOCS.items(), *((v.call, v.doc) for v in VIEWS)]:
        assert any(line.split()[1] == name and line.endswith(doc) for line in result.stdout.splitlines()), (
            name
        )


def test_no_query_is_a_usage_error():
    result = sql()
    assert result.exit_code == 2 and "--list" in result.stderr
