"""Compaction: history reads answer the same before and after it, readers never see a row twice or miss
one while it runs, a retried run still reads its stages' parts, and a run reads a bounded part of history."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import triage.lake.compaction as compaction
import triage.tasks.audit as audit_trail
from triage.lake import Lake, record_stage
from triage.lake.io import RETAINED
from triage.lake.runs import Window, completed_windows, last_high_water_mark
from triage.tasks.audit import dangling_intents, done_changes, owed_results, own_writes
from triage.tasks.compact import compact_all, compact_and_vacuum

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TOLERANCE = timedelta(seconds=5)


def audit(run_id: str, write_id: str, ticket_id: int, field: str, label: str, **kw: Any) -> dict[str, Any]:
    """One audit row: an intent unless ``status`` says otherwise."""
    sent = kw.pop("sent_at")
    status = kw.pop("status", "pending")
    result = status != "pending"
    return {
        "run_id": run_id,
        "decision_run_id": run_id,
        "write_id": write_id,
        "phase": "result" if result else "intent",
        "ticket_id": ticket_id,
        "field": field,
        "label": label,
        "method": kw.pop("method", "update"),
        "status": status,
        "reason_code": kw.pop("reason_code", None),
        "http_status": 200 if status == "ok" else None,
        "request_id": None,
        "job_id": None,
        "error": None,
        "snapshot_updated_at": sent - timedelta(minutes=5),
        "ticket_updated_at": kw.pop(
            "ticket_updated_at", sent + timedelta(seconds=1) if status == "ok" else None
        ),
        "sent_at": sent,
        "completed_at": sent + timedelta(seconds=1) if result else None,
        "model_version": "v1",
    }


def write_run(
    lake: Lake, hour: int, *, date: datetime | None = None, extra: Sequence[dict[str, Any]] = ()
) -> None:
    """One hourly run: 20 writes to tickets created that day (intent part, result part), plus ``extra``
    rows in a part of their own, and its ``runs`` row."""
    run_id, end = f"run-{hour:04d}", T0 + timedelta(hours=hour + 1)
    base = 1000 + 10 * hour
    sent = end + timedelta(minutes=1)
    intents = [audit(run_id, f"{run_id}-{i}", base + i, "priority", "High", sent_at=sent) for i in range(20)]
    results = [
        audit(run_id, r["write_id"], r["ticket_id"], "priority", "High", sent_at=sent, status="ok")
        for r in intents
    ]
    for name, rows in (
        ("intent-1", intents),
        ("result-1", results),
        ("extra", [{**r, "run_id": run_id, "decision_run_id": run_id} for r in extra]),
    ):
        if rows:
            lake.write("audit", rows, date=date or end, run_id=run_id, name=name)
    window = Window(end - timedelta(hours=1), end, "watermark")
    record_stage(
        lake,
        run_id=run_id,
        flow="triage",
        stage="run",
        status="ok",
        started_at=end,
        window=window,
        partition=date or end,
        high_water_mark=end - timedelta(seconds=30),
    )


def answers(
    lake: Lake, hour: int, *, every_ticket: bool = True, windows_of: str = "triage"
) -> dict[str, Any]:
    """Every history read of an hourly run at ``hour``, in comparable form: changes done to every ticket
    so far (or to the run's own and the old ones), completed windows of ``windows_of``."""
    since = T0 + timedelta(hours=hour - 1)
    mine = own_writes(lake, since=since, tolerance=TOLERANCE, clock_offset=lambda: timedelta(0))
    recent = range(1000 + 10 * (0 if every_ticket else hour), 1000 + 10 * hour + 20)
    return {
        "done": done_changes(lake, [1, 2, 3, 4, *recent]),
        "dangling": sorted((r.write_id, r.ticket_id) for r in dangling_intents(lake)),
        "owed": sorted((r.write_id, r.ticket_id, r.label) for r in owed_results(lake, "write")),
        "own": {t: sorted(v) for t, v in mine.exact.items()},
        "mark": last_high_water_mark(lake),
        "windows": completed_windows(lake, flow=windows_of),
    }


def old_history(lake: Lake) -> None:
    """Day 0: a write agents later overrode (done: never sent again), a dangling intent and an owed write;
    none of them resolved afterwards."""
    at = T0 + timedelta(minutes=10)
    write_run(
        lake,
        0,
        extra=[
            audit("x", "old-done", 4, "priority", "High", sent_at=at),
            audit("x", "old-done", 4, "priority", "High", sent_at=at, status="ok"),
            audit("x", "old-dangling", 2, "group", "Billing", sent_at=at),
            audit("x", "old-owed", 3, "type", "Problem", sent_at=at),
            audit(
                "x",
                "old-owed",
                3,
                "type",
                "Problem",
                sent_at=at,
                status="not_applied",
                reason_code="not_sent",
            ),
        ],
    )


def test_history_reads_answer_the_same_before_and_after_compaction(tmp_path):
    """Two lakes get the same writes; one is compacted every day (and its retained parts vacuumed), the
    other never: every history read answers the same at every step, old open items included."""
    plain, compacted = Lake(tmp_path / "plain"), Lake(tmp_path / "compacted")
    for lake in (plain, compacted):
        old_history(lake)
    for hour in range(1, 24 * 12):
        extra = []
        if (
            hour == 30
        ):  # a later run re-tries the owed write; the helpdesk's answer says another run still holds it
            at = T0 + timedelta(hours=30, minutes=2)
            extra = [
                audit(
                    "x",
                    "skip-3",
                    3,
                    "type",
                    "Problem",
                    sent_at=at,
                    status="skipped",
                    reason_code="unresolved_write",
                )
            ]
        for lake in (plain, compacted):
            # a backfill writes an old window's date now, after that day was compacted
            write_run(lake, hour, date=T0 if hour == 100 else None, extra=extra)
        if hour % 24 == 0:
            compact_and_vacuum(
                compacted, run_id="nightly", flow="nightly", retain_days=1, lease_seconds=30, wait=0
            )
        if hour % 24 in (0, 13):
            assert answers(compacted, hour) == answers(plain, hour), hour
    final = answers(compacted, 24 * 12)
    assert ("old-dangling", 2) in final["dangling"]
    assert ("old-owed", 3, "Problem") in final["owed"]
    assert (4, "priority", "High", "write") in final["done"]  # the old write agents overrode: never again
    day0 = Path(compacted.table_dir("audit")) / "date=2026-01-01"
    assert [p.parent.name for p in day0.rglob("*.parquet")] == [
        "run=compacted"
    ]  # one file, the backfill's too


def test_readers_never_see_a_row_twice_or_miss_one_while_compaction_runs(tmp_path):
    lake = Lake(tmp_path / "lake")
    for hour in range(24 * 6):
        write_run(lake, hour)
    expected = lake.scan("audit").num_rows
    seen: list[int] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.append(lake.scan("audit", columns=["write_id"]).num_rows)
            except Exception as exc:  # a part moved away between listing and reading, given up on
                errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        compact_all(lake, settled_before=datetime.now(UTC))
    finally:
        stop.set()
        reader.join()
    assert not errors and seen and set(seen) == {expected}
    assert lake.scan("audit").num_rows == expected


def test_a_compaction_cut_off_before_its_cleanup_leaves_nothing_doubled(tmp_path, monkeypatch):
    """The merged file is in place, the parts it replaces still there: readers skip them (the dataset
    `triage sql` queries too); the next compaction finishes the cleanup."""
    lake = Lake(tmp_path / "lake")
    for hour in range(30):
        write_run(lake, hour)
    expected = sorted(lake.scan("audit").column("write_id").to_pylist())
    answers_before = answers(lake, 30)

    def cut_off(lake: Lake, paths: list[str]) -> None:
        if paths:  # after the first merged file is in place
            raise KeyboardInterrupt

    monkeypatch.setattr(compaction, "_retire", cut_off)
    with pytest.raises(KeyboardInterrupt):
        compact_all(lake, settled_before=datetime.now(UTC))
    monkeypatch.undo()
    on_disk = list(Path(lake.table_dir("audit")).rglob("*.parquet"))
    assert any(p.parent.name == "run=compacted" for p in on_disk) and len(on_disk) > 2
    assert sorted(lake.scan("audit").column("write_id").to_pylist()) == expected
    assert sorted(lake.dataset("audit").to_table().column("write_id").to_pylist()) == expected  # triage sql's
    assert answers(lake, 30) == answers_before
    compact_all(lake, settled_before=datetime.now(UTC))
    assert sorted(lake.scan("audit").column("write_id").to_pylist()) == expected
    assert len(list(Path(lake.table_dir("audit")).rglob("*.parquet"))) == 2  # one a day


def test_stage_parts_are_merged_after_the_retry_horizon_and_still_read_by_path_until_vacuum(tmp_path):
    """A part a retried stage would replace stays in place within the retry horizon; merged after it, the
    path a cached manifest holds still reads it (from ``_retained/``) until vacuum deletes it."""
    lake = Lake(tmp_path / "lake")
    write_run(lake, 0)
    part = lake.write("tickets", [ticket_row("run-0000", 7)], date=T0, run_id="run-0000", name="extract-1")
    compact_and_vacuum(lake, run_id="n", flow="nightly", retain_days=1, lease_seconds=30, wait=0)
    assert Path(part.path).exists()  # younger than the horizon: a retried extract replaces it in place
    assert lake.read_partition("audit", date=T0, run_id="run-0000").num_rows == 40  # the audit merged at once
    compact_all(lake, settled_before=datetime.now(UTC))
    assert not Path(part.path).exists() and Path(lake.retained_path(part.path)).exists()
    assert lake.read_paths("tickets", [part.path]).column("ticket_id").to_pylist() == [7]
    assert lake.scan("tickets").column("ticket_id").to_pylist() == [7]
    assert compaction.vacuum(lake, older_than=datetime.now(UTC) + timedelta(days=2)) > 0
    assert not list((Path(lake.root) / RETAINED).rglob("*.parquet"))
    assert lake.scan("tickets").column("ticket_id").to_pylist() == [7]


def ticket_row(run_id: str, ticket_id: int) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "purpose": "triage",
        "ticket_id": ticket_id,
        "subject": "s",
        "description": "d",
        "status": 2,
        "priority": 1,
        "group_id": None,
        "type": None,
        "responder_id": None,
        "source": 1,
        "tags": [],
        "custom_fields": "{}",
        "created_at": T0,
        "updated_at": T0,
        "extracted_at": T0,
        "skip_reason": None,
    }


class ReadCounter:
    """Counts what the history reads read: files opened, and rows of the row groups they decode (those a
    filtered scan cannot skip by their statistics; those read of the audit's state and done index)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rows = 0
        self.files = 0
        counter = self

        class Counted:
            def __init__(self, dataset: ds.Dataset) -> None:
                self.dataset = dataset

            def to_table(self, columns: Any = None, filter: Any = None) -> Any:
                for fragment in self.dataset.get_fragments():
                    counter.files += 1
                    if filter is None:
                        counter.rows += fragment.count_rows()
                    else:
                        groups = fragment.split_by_row_group(filter, schema=self.dataset.schema)
                        counter.rows += sum(g.count_rows() for g in groups)
                return self.dataset.to_table(columns=columns, filter=filter)

        class File(pq.ParquetFile):
            def read_row_groups(self, *a: Any, **kw: Any) -> Any:
                return counter.read(super().read_row_groups(*a, **kw))

        monkeypatch.setattr(
            "triage.lake.io.ds", SimpleNamespace(dataset=lambda *a, **kw: Counted(ds.dataset(*a, **kw)))
        )
        state_io = SimpleNamespace(
            ParquetFile=File,
            read_table=lambda *a, **kw: self.read(pq.read_table(*a, **kw)),
            write_table=pq.write_table,
        )
        monkeypatch.setattr("triage.tasks.audit.pq", state_io)

    def read(self, table: Any) -> Any:
        self.files += 1
        self.rows += table.num_rows
        return table


def test_the_history_a_run_reads_does_not_grow_with_the_lake(tmp_path, monkeypatch):
    """Rows a run's history reads decode, at 4 days of hourly history and at 40: the same (the lake grew
    tenfold); the files they open grow by one a day (a scan by completed windows of the backfill, which
    skips every row group by its statistics)."""
    # Row groups as small against this history as 4,096 rows are against a year's.
    for module in (compaction, audit_trail):
        monkeypatch.setattr(module, "ROW_GROUP_ROWS", 256)
    lake = Lake(tmp_path / "lake")
    old_history(lake)
    measured = {}
    hour = 1
    for days in (4, 40):
        while hour < 24 * days:
            write_run(lake, hour)
            if hour % 24 == 23:
                compact_all(lake, settled_before=datetime.now(UTC))
            hour += 1
        with pytest.MonkeyPatch.context() as patch:
            counter = ReadCounter(patch)
            found = answers(lake, hour, every_ticket=False, windows_of="backfill")
        measured[days] = (counter.rows, counter.files, lake.scan("audit").num_rows)
        assert ("old-dangling", 2) in found["dangling"] and ("old-owed", 3, "Problem") in found["owed"]
    (rows_4, files_4, total_4), (rows_40, files_40, total_40) = measured[4], measured[40]
    assert total_40 > 9 * total_4
    assert rows_40 <= rows_4 * 1.1, measured
    assert files_40 - files_4 <= 36, measured  # completed windows: one footer a day


def test_compaction_of_a_lake_written_before_it_existed(tmp_path):
    """Migration: a lake of parts only (no state), compacted once, answers as before."""
    lake = Lake(tmp_path / "lake")
    old_history(lake)
    for hour in range(1, 50):
        write_run(lake, hour)
    copy = Lake(shutil.copytree(tmp_path / "lake", tmp_path / "copy"))
    before = answers(lake, 50)
    line = compact_and_vacuum(lake, run_id="migrate", flow="compact", retain_days=8, lease_seconds=30, wait=0)
    assert "audit: 101 files into 3 (2005 rows" in line and "runs: 50 files into 3 (50 rows" in line, line
    assert answers(lake, 50) == before == answers(copy, 50)
    assert (Path(lake.root) / "_state" / "audit_open.parquet").exists()
