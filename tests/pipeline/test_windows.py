"""Window edges: times given without a timezone (the CLI's) are UTC everywhere a window is used."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tasks.context import StageContext
from tasks.extract import extract
from triage.lake import Lake, Window, record_stage
from triage.lake.runs import completed_windows, utcnow

NAIVE_START, NAIVE_END = datetime(2026, 1, 1), datetime(2026, 1, 2)


def test_parameters_without_a_timezone_mean_utc():
    from flows.backfill import BackfillParams
    from flows.incremental import TriageParams

    params = TriageParams(since=NAIVE_START, until=NAIVE_END)
    assert (params.since, params.until) == (NAIVE_START.replace(tzinfo=UTC), NAIVE_END.replace(tzinfo=UTC))
    backfill = BackfillParams(start=NAIVE_START, end=NAIVE_END)
    assert backfill.start.tzinfo is not None and backfill.end == NAIVE_END.replace(tzinfo=UTC)
    ctx = StageContext(
        run_id="r", flow="triage", window_start=NAIVE_START, window_end=NAIVE_END, window_source="explicit"
    )
    assert ctx.window_start == NAIVE_START.replace(tzinfo=UTC) and ctx.window_end.tzinfo is not None


def test_a_backfill_given_naive_dates_recognises_its_completed_batches(tmp_path):
    from flows.backfill import BackfillParams, batches

    lake = Lake(tmp_path)
    params = BackfillParams(start=NAIVE_START, end=NAIVE_END, batch_hours=12)
    first = batches(params.start, params.end, params.batch_hours)[0]
    record_stage(
        lake,
        run_id="b1",
        flow="backfill",
        stage="run",
        status="ok",
        started_at=utcnow(),
        window=Window(start=first[0], end=first[1], source="explicit"),
        partition=first[1],
    )
    again = BackfillParams(start=NAIVE_START, end=NAIVE_END, batch_hours=12)
    done = completed_windows(lake, flow="backfill")
    assert [w in done for w in batches(again.start, again.end, again.batch_hours)] == [True, False]


@pytest.mark.asyncio
async def test_extract_over_a_naive_window_reads_it_in_batches(config, adapter_for, sim):
    end = utcnow().replace(tzinfo=None, microsecond=0) + timedelta(seconds=2)
    ctx = StageContext(
        run_id="naive",
        flow="triage",
        window_start=end - timedelta(days=2),
        window_end=end,
        window_source="explicit",
        config_path=str(config),
        overrides={"pipeline": {"extract_batch_size": 5}},
    )
    progress: list[float] = []
    async with adapter_for(ctx) as adapter:
        manifest = await extract(ctx, adapter, on_progress=progress.append)
    assert manifest.eligible >= len(sim.truth()) > 5
    assert len(manifest.paths) > 1 and progress[-1] == 1.0
