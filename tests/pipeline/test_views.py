"""The analyst views tell what is true after retries: one row per change, per run, per ticket-field.

Lake rows come from the real writers (``record_stage``, ``write_audit`` with rows built by push's own
``audit_row``); each test also shows the raw table still holding every try.
"""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from triage.lake import Lake, Window, record_stage
from triage.lake.compaction import compact_table
from triage.lake.schemas import TABLE_DOCS, TABLES
from triage.lake.views import VIEWS, connect, views_markdown
from triage.tasks.audit import compact_audit, write_audit
from triage.tasks.context import StageContext
from triage.tasks.push_plan import Change, Request
from triage.tasks.push_state import audit_row

LAKE_DOCS = Path(__file__).resolve().parents[2] / "docs" / "lake.md"
T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def context(run_id: str, *, attempt: int = 1, end: datetime = T0) -> StageContext:
    return StageContext(
        run_id=run_id,
        flow="triage",
        window_start=end - timedelta(hours=1),
        window_end=end,
        window_source="explicit",
        attempt=attempt,
    )


def change(ticket_id: int, field: str, label: str, decision_run_id: str) -> Change:
    return Change(
        ticket_id=ticket_id,
        field=field,
        label=label,
        probability=0.95,
        decision_run_id=decision_run_id,
        model_version="v-test",
        snapshot_updated_at=T0 - timedelta(hours=2),
    )


def push(lake: Lake, ctx: StageContext, done: Change, at: datetime, status: str | None, **extra) -> str:
    """An intent for ``done`` sent at ``at`` and, unless ``status`` is None, its result a second later."""
    request = Request("update", (done.ticket_id,), {}, (done,))
    write_id = uuid.uuid4().hex
    intent = audit_row(ctx, request, done, write_id, "intent", "pending", at)
    write_audit(lake, [intent], run_id=ctx.run_id, partition=ctx.partition)
    if status is not None:
        completed = at + timedelta(seconds=1)
        result = audit_row(
            ctx, request, done, write_id, "result", status, at, completed_at=completed, **extra
        )
        write_audit(lake, [result], run_id=ctx.run_id, partition=ctx.partition)
    return write_id


def test_a_write_that_failed_then_succeeded_is_one_ok_change_and_no_failed_write(tmp_path):
    lake = Lake(tmp_path / "lake")
    first, retry = context("run-a"), context("run-a", attempt=2)
    retried = change(1, "group", "Billing", "run-a")
    refused = change(2, "priority", "High", "run-a")
    owed_then_sent = change(3, "type", "Question", "run-a")
    cut_off = change(4, "group", "Sales", "run-a")
    push(lake, first, retried, T0, "failed", reason_code="ValidationError", http_status=400)
    push(lake, first, refused, T0, "failed", reason_code="ValidationError", http_status=400)
    push(lake, first, owed_then_sent, T0, "not_applied", reason_code="not_sent")
    push(lake, retry, retried, T0 + timedelta(minutes=5), "ok", http_status=200, request_id="req-1")
    later = context("run-b", end=T0 + timedelta(hours=1))
    push(lake, later, owed_then_sent, T0 + timedelta(hours=1), "ok", http_status=200)
    push(lake, later, cut_off, T0 + timedelta(hours=1), None)  # sent, then the run was killed
    con = connect(lake)

    raw = con.sql("SELECT count(*) FROM audit WHERE phase = 'result' AND ticket_id = 1").fetchall()
    assert raw == [(2,)]  # the table keeps both tries
    changes = {
        row[0]: row[1:]
        for row in con.sql(
            "SELECT ticket_id, status, results, request_id, decision_run_id FROM latest_changes"
        ).fetchall()
    }
    assert changes == {
        1: ("ok", 2, "req-1", "run-a"),
        2: ("failed", 1, None, "run-a"),
        3: ("ok", 2, None, "run-a"),
        4: ("pending", 0, None, "run-a"),
    }
    failed = con.sql("SELECT ticket_id, status, reason_code FROM failed_writes ORDER BY ticket_id").fetchall()
    assert failed == [(2, "failed", "ValidationError"), (4, "pending", None)]  # the cut-off one is not done


def test_an_unresolved_write_skip_does_not_hide_the_result_before_it(tmp_path):
    lake = Lake(tmp_path / "lake")
    ctx = context("run-a")
    owed = change(5, "group", "Billing", "run-a")
    push(lake, ctx, owed, T0, "not_applied", reason_code="not_found_on_reread")
    push(lake, ctx, owed, T0 + timedelta(minutes=1), "skipped", reason_code="unresolved_write")
    row = connect(lake).sql("SELECT status, reason_code FROM failed_writes").fetchall()
    assert row == [("not_applied", "not_found_on_reread")]  # still owed, as push itself reads it


def test_changes_since_keeps_the_latest_try_and_counts_the_tries_since(tmp_path):
    lake = Lake(tmp_path / "lake")
    retried = change(1, "group", "Billing", "run-a")
    push(lake, context("run-a"), retried, T0, "failed", reason_code="rate_limited", http_status=429)
    push(lake, context("run-b", end=T0 + timedelta(hours=1)), retried, T0 + timedelta(hours=1), "ok")
    con = connect(lake)

    since = "SELECT ticket_id, status, results FROM changes_since(?::TIMESTAMPTZ)"
    assert con.execute(since, [T0]).fetchall() == [(1, "ok", 2)]  # failed, then ok: one change, ok
    assert con.execute(since, [T0 + timedelta(minutes=30)]).fetchall() == [(1, "ok", 1)]  # the tries since
    assert con.execute(since, [T0 + timedelta(hours=2)]).fetchall() == []
    assert con.sql("SELECT count(*) FROM failed_writes").fetchall() == [(0,)]
    on_a_day = "SELECT status, results FROM changes_since(DATE '2026-11-28')"
    assert con.sql(on_a_day).fetchall() == [("ok", 2)]


def docs_query(name: str) -> str:
    """The SQL block of docs/lake.md marked ``triage-query: <name>``."""
    blocks = re.findall(r"```sql\n(.*?)```", LAKE_DOCS.read_text(encoding="utf-8"), re.S)
    return next(code for code in blocks if f"triage-query: {name}\n" in code)


def test_a_backfills_change_decided_yesterday_is_in_changes_yesterday_whatever_its_partition(tmp_path):
    # A backfill of an old window writes its decisions and audit rows into that window's (old) partition.
    lake = Lake(tmp_path / "lake")
    yesterday = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)
    old_window = datetime(2026, 1, 5, 10, tzinfo=UTC)
    for ticket_id, decided in [(7, yesterday), (8, yesterday - timedelta(days=1))]:
        run_id = f"backfill-{ticket_id}"
        row = {
            "run_id": run_id,
            "ticket_id": ticket_id,
            "field": "group",
            "mode": "apply",
            "action": "apply",
            "label": "Billing",
            "probability": 0.97,
            "reason_code": "confident",
            "reason": "probability clears the field's apply threshold",
            "decided_at": decided,
        }
        lake.write("decisions", [row], date=old_window, run_id=run_id, name="decisions-00001")
        done = change(ticket_id, "group", "Billing", run_id)
        push(
            lake, context(run_id, end=old_window), done, decided + timedelta(minutes=1), "ok", http_status=200
        )
    rows = connect(lake).sql(docs_query("changes-yesterday")).fetchall()
    assert [(r[0], r[6], r[7]) for r in rows] == [(7, "ok", 1)]  # ticket, status, results
    compact_audit(lake)
    compact_table(lake, "decisions")  # the old dates' merged files, named by the newest time they hold
    assert connect(lake).sql(docs_query("changes-yesterday")).fetchall() == rows


def test_an_open_intent_kept_in_the_open_items_state_is_a_pending_failed_write(tmp_path):
    lake = Lake(tmp_path / "lake")
    ctx = context("run-a")
    cut_off, answered_later = change(1, "group", "Sales", "run-a"), change(2, "type", "Question", "run-a")
    push(lake, ctx, cut_off, T0, None)
    answered = push(lake, ctx, answered_later, T0, None)
    assert compact_audit(lake)  # merged: the two open intents now live in the open-items state
    later = context("run-b", end=T0 + timedelta(hours=1))
    request = Request("update", (2,), {}, (answered_later,))
    reread = audit_row(
        later, request, answered_later, answered, "result", "ok", T0, completed_at=T0 + timedelta(hours=1)
    )
    write_audit(lake, [reread], run_id="run-b", partition=later.partition)  # the next run's re-read
    con = connect(lake)

    failed = con.sql("SELECT ticket_id, status, results, date FROM failed_writes").fetchall()
    assert failed == [(1, "pending", 0, None)]
    changes = con.sql("SELECT ticket_id, status FROM latest_changes ORDER BY ticket_id").fetchall()
    assert changes == [(1, "pending"), (2, "ok")]
    assert compact_audit(lake)  # the re-read folded in too: still the same answers
    assert connect(lake).sql("SELECT ticket_id, status FROM failed_writes").fetchall() == [(1, "pending")]


def test_a_file_written_before_a_column_existed_reads_it_as_null(tmp_path):
    lake = Lake(tmp_path / "lake")
    old = pa.table({"run_id": ["run-old"], "flow": ["triage"], "stage": ["run"], "status": ["ok"]})
    folder = Path(lake.partition_dir("runs", date=T0 - timedelta(days=400), run_id="run-old"))
    folder.mkdir(parents=True)
    pq.write_table(old, folder / "runs-00001.parquet")  # no attempt, no times: an early version's file
    os.utime(folder / "runs-00001.parquet", (T0.timestamp() - 400 * 86400,) * 2)
    record(lake, "run-new", "run", "ok", attempt=2, at=T0)
    con = connect(lake)

    rows = con.sql("SELECT run_id, attempt, started_at, date FROM runs ORDER BY run_id").fetchall()
    assert rows == [("run-new", 2, T0, "2026-11-28"), ("run-old", None, None, "2025-10-24")]
    assert [r[0] for r in con.sql("DESCRIBE runs").fetchall()] == [*TABLES["runs"].names, "date"]
    assert connect(lake).sql("SELECT count(*) FROM latest_runs").fetchall() == [(2,)]
    (folder / "runs-00001.parquet").unlink()  # every file current: bound to the schema, the same columns
    assert [r[0] for r in connect(lake).sql("DESCRIBE runs").fetchall()] == [*TABLES["runs"].names, "date"]


def record(lake: Lake, run_id: str, stage: str, status: str, *, attempt: int, at: datetime, **extra) -> None:
    window = Window(start=T0 - timedelta(hours=1), end=T0, source="watermark")
    record_stage(
        lake,
        run_id=run_id,
        flow="triage",
        stage=stage,
        status=status,
        started_at=at,
        finished_at=at + timedelta(seconds=30),
        window=window,
        partition=T0,
        attempt=attempt,
        **extra,
    )


def test_a_retried_run_is_one_run_with_its_attempts(tmp_path):
    lake = Lake(tmp_path / "lake")
    record(lake, "run-a", "extract", "ok", attempt=1, at=T0)
    record(lake, "run-a", "push", "failed", attempt=1, at=T0 + timedelta(minutes=1), message="boom")
    record(lake, "run-a", "run", "failed", attempt=1, at=T0 + timedelta(minutes=2), message="boom")
    record(lake, "run-a", "push", "ok", attempt=2, at=T0 + timedelta(minutes=10))
    record(lake, "run-a", "run", "ok", attempt=2, at=T0 + timedelta(minutes=11), rows_in=40, rows_out=12)
    record(lake, "run-b", "extract", "ok", attempt=1, at=T0 + timedelta(hours=1))  # under way, or killed
    con = connect(lake)

    raw = con.sql(
        "SELECT status FROM runs WHERE run_id = 'run-a' AND stage = 'run' ORDER BY attempt"
    ).fetchall()
    assert raw == [("failed",), ("ok",)]
    runs = con.sql(
        "SELECT run_id, status, attempts, last_stage, rows_in, rows_out, message, started_at, window_end "
        "FROM latest_runs ORDER BY run_id"
    ).fetchall()
    assert runs == [
        ("run-a", "ok", 2, "run", 40, 12, None, T0, T0),
        ("run-b", "unfinished", 1, "extract", None, None, None, T0 + timedelta(hours=1), T0),
    ]


def test_an_outcome_compared_on_two_nights_is_one_row_the_latest(tmp_path):
    lake = Lake(tmp_path / "lake")
    for night, (run_id, final) in enumerate([("night-1", "Billing"), ("night-2", "Sales")]):
        end = T0 + timedelta(days=night)
        rows = [
            {
                "run_id": run_id,
                "ticket_id": ticket_id,
                "field": field,
                "predicted_label": "Billing",
                "final_label": final,
                "correct": final == "Billing",
                "resolved_updated_at": T0 - timedelta(hours=3),
            }
            for ticket_id in (1, 2)
            for field in ("group", "type")
        ]
        lake.write("outcomes", rows, date=end, run_id=run_id, name="outcomes-00001")
        record_stage(
            lake,
            run_id=run_id,
            flow="nightly",
            stage="outcomes",
            status="ok",
            started_at=end,
            window=None,
            partition=end,
        )
    con = connect(lake)

    assert con.sql("SELECT count(*) FROM outcomes").fetchall() == [(8,)]
    latest = con.sql(
        "SELECT ticket_id, field, run_id, final_label, correct FROM latest_outcomes ORDER BY ALL"
    )
    assert latest.fetchall() == [
        (1, "group", "night-2", "Sales", False),
        (1, "type", "night-2", "Sales", False),
        (2, "group", "night-2", "Sales", False),
        (2, "type", "night-2", "Sales", False),
    ]


def relation(view) -> str:
    """The view by name, or the table macro called from the beginning of time."""
    return view.name + ("('-infinity'::TIMESTAMPTZ)" if view.params else "")


def test_a_fresh_lake_answers_every_table_and_view_with_no_rows(tmp_path):
    con = connect(tmp_path / "nothing-yet")
    for name in [*TABLE_DOCS, *(relation(v) for v in VIEWS)]:
        assert con.sql(f"SELECT count(*) FROM {name}").fetchall() == [(0,)], name


def test_each_view_has_the_columns_its_doc_names_and_the_docs_list_them(tmp_path):
    con = connect(tmp_path / "lake")
    for view in VIEWS:
        described = [row[0] for row in con.sql(f"DESCRIBE SELECT * FROM {relation(view)}").fetchall()]
        assert described == list(view.columns), view.name
        assert set(view.derived) <= set(view.columns), view.name
    text = LAKE_DOCS.read_text(encoding="utf-8")
    start, end = "<!-- lake-views:start -->", "<!-- lake-views:end -->"
    documented = text[text.index(start) + len(start) : text.index(end)].strip()
    assert documented == views_markdown().strip(), (
        "docs/lake.md's list of views is stale: replace the lines between its markers with the output of "
        "`python -c 'from triage.lake.views import views_markdown; print(views_markdown())'`"
    )


@pytest.fixture
def s3_lake(monkeypatch) -> str:
    """A bucket on moto's S3 API server on loopback, named by the standard AWS variables."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "triage-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "triage-test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    boto3.client("s3").create_bucket(Bucket="views")
    yield "s3://views/lake"
    server.stop()


def test_the_views_read_an_s3_lake_without_any_duckdb_extension(s3_lake):
    lake = Lake(s3_lake)
    record(lake, "run-a", "run", "failed", attempt=1, at=T0)
    record(lake, "run-a", "run", "ok", attempt=2, at=T0 + timedelta(minutes=5))
    con = connect(s3_lake)
    assert con.sql("SELECT run_id, status, attempts FROM latest_runs").fetchall() == [("run-a", "ok", 2)]
    assert con.sql("SELECT count(*) FROM failed_writes").fetchall() == [(0,)]  # no audit folder yet
    push(lake, context("run-a"), change(1, "group", "Billing", "run-a"), T0, "failed", http_status=429)
    push(lake, context("run-b"), change(1, "group", "Billing", "run-a"), T0 + timedelta(hours=1), None)
    con = connect(s3_lake)
    since = con.execute("SELECT status, results FROM changes_since(?::TIMESTAMPTZ)", [T0]).fetchall()
    assert since == [("pending", 1)] == con.sql("SELECT status, results FROM failed_writes").fetchall()
    loaded = {
        row[0] for row in con.sql("SELECT extension_name FROM duckdb_extensions() WHERE loaded").fetchall()
    }
    assert "httpfs" not in loaded
