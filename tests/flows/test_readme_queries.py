"""`triage demo` end to end (small), then every query marked `triage-query` in the docs (docs/lake.md) on its
output: the SQL through `triage sql`, the Python as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from triage.cli import app
from triage.lake.views import connect

pytestmark = pytest.mark.flow
ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
BLOCK = re.compile(r"```(sql|python)\n(.*?)```", re.S)
#: The queries that ask about all time (the others say which days, on the rows' own times).
UNBOUNDED = {"recent-runs"}


def docs_queries() -> list[tuple[str, str]]:
    """(language, code) of each block marked ``triage-query`` in the docs' pages (docs/lake.md has them)."""
    return [
        (lang, code)
        for source in sorted(DOCS.glob("*.md"))
        for lang, code in BLOCK.findall(source.read_text(encoding="utf-8"))
        if "triage-query:" in code
    ]


@pytest.fixture(scope="module")
def demo_lake(prefect_harness, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    # A small demo; its hold-out is small too, so the precision target is one it can reach.
    args = [
        "--tickets",
        "500",
        "--open",
        "40",
        "--window-seconds",
        "2",
        "--max-length",
        "64",
        "--target-precision",
        "0.7",
    ]
    result = CliRunner().invoke(app, ["demo", "--dir", str(folder), *args])
    assert result.exit_code == 0, result.output
    assert "precision" in result.output and str(folder / "lake") in result.output
    # the account's history has tags: the model learns them and the output reports them
    assert re.search(
        r"^tags +\d+ .* micro-F1 [\d.]+ \([\d.]+\); \d+ of \d+ tags may be added$", result.output, re.M
    )
    return folder / "lake"


def test_the_demo_writes_and_reports_against_the_hidden_labels(demo_lake):
    runs = connect(demo_lake).sql("SELECT flow, status, attempts FROM latest_runs").fetchall()
    assert sorted(runs) == [("train", "ok", 1), ("triage", "ok", 1)]


def test_the_demos_predictions_rank_the_accounts_tags_for_every_open_ticket(demo_lake):
    """One tags row per open ticket: its best tags (at least the fields' top 3) best first, plus every tag
    decide may act on; bounded, not every learned tag; the account's common tags among the best."""
    rows = connect(demo_lake).sql("SELECT ticket_id, top_k FROM predictions WHERE field = 'tags'").fetchall()
    assert len(rows) == len({ticket_id for ticket_id, _ in rows}) == 40
    learned = json.loads(next((demo_lake.parent / "models").rglob("model.json")).read_text())["tags"][
        "labels"
    ]
    for _, top_k in rows:
        labels = [k["label"] for k in top_k]
        probabilities = [k["probability"] for k in top_k]
        assert 3 <= len(labels) == len(set(labels)) < len(learned) and set(labels) <= set(learned)
        assert probabilities == sorted(probabilities, reverse=True)
    best = {top_k[0]["label"] for _, top_k in rows}
    assert best & {"escalated", "refund", "mobile"}, best


def test_every_docs_query_runs_on_a_real_runs_output(demo_lake, monkeypatch, capsys):
    queries = docs_queries()
    assert queries, "no block marked `triage-query` in docs/*.md (docs/lake.md's example queries have them)"
    monkeypatch.chdir(demo_lake.parent)  # the queries use the default path data/lake
    (demo_lake.parent / "data").mkdir()
    (demo_lake.parent / "data" / "lake").symlink_to(demo_lake)
    answered = {}
    for lang, code in queries:
        name = re.search(r"triage-query: ([\w-]+)", code).group(1)
        assert "current_date" in code or name in UNBOUNDED, f"{name}: no time bound"
        code = code.replace("current_date", "(current_date + 1)")  # the demo ran today: ask tomorrow
        if lang == "sql":
            result = CliRunner().invoke(app, ["sql", "--lake", "data/lake", "--format", "json", code])
            assert result.exit_code == 0, (name, result.output)
            answered[name] = json.loads(result.stdout)
        else:
            exec(compile(code, name, "exec"), {})
            answered[name] = capsys.readouterr().out.strip().splitlines()
    changes = answered["changes-yesterday"]
    statuses = {row["status"] for row in changes}
    assert changes and statuses <= {"ok", "skipped"} and "ok" in statuses
    assert all(
        row["http_status"] in (200, 202) and row["request_id"] for row in changes if row["status"] == "ok"
    )
    applied = connect(demo_lake).sql(
        "SELECT count(*) FROM decisions WHERE action = 'apply' AND mode <> 'shadow'"
        " AND CAST(decided_at AS DATE) = current_date"
    )
    assert applied.fetchall() == [(len(changes),)]  # one row per applied decision, however many tries
    printed = answered["changes-yesterday-pandas"]
    assert "request_id" in printed[0] and len(printed) > 1  # the header, then the rows
    runs = answered["recent-runs"]
    assert len(runs) == len({row["run_id"] for row in runs}) == 2
    assert answered["confidence-by-field"]
    assert {row["status"] for row in answered["failed-writes"]} <= {
        "failed",
        "not_applied",
        "unknown",
        "pending",
    }
    assert answered["accuracy-by-field"] == []  # the demo runs no nightly flow: no outcomes yet
