"""Window edges: times given without a timezone (the CLI's) are UTC everywhere a window is used."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pipeline_helpers import write_config

from triage.lake import Lake, Window, record_stage
from triage.lake.runs import completed_windows, next_window, utcnow
from triage.settings import load_settings
from triage.simulator import SimulatorConfig, run_simulator
from triage.tasks.context import StageContext
from triage.tasks.extract import extract

NAIVE_START, NAIVE_END = datetime(2026, 1, 1), datetime(2026, 1, 2)


def test_parameters_without_a_timezone_mean_utc():
    from triage.flows.backfill import BackfillParams
    from triage.flows.incremental import TriageParams

    params = TriageParams(since=NAIVE_START, until=NAIVE_END)
    assert (params.since, params.until) == (NAIVE_START.replace(tzinfo=UTC), NAIVE_END.replace(tzinfo=UTC))
    backfill = BackfillParams(start=NAIVE_START, end=NAIVE_END)
    assert backfill.start.tzinfo is not None and backfill.end == NAIVE_END.replace(tzinfo=UTC)
    ctx = StageContext(
        run_id="r", flow="triage", window_start=NAIVE_START, window_end=NAIVE_END, window_source="explicit"
    )
    assert ctx.window_start == NAIVE_START.replace(tzinfo=UTC) and ctx.window_end.tzinfo is not None


def test_a_backfill_given_naive_dates_recognises_its_completed_batches(tmp_path):
    from triage.flows.backfill import BackfillParams, batches

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


async def _incremental_run(config, adapter_for, run_id: str, *, end: datetime | None = None) -> set[int]:
    """One incremental extract over the lake's next window (ending ``end``, default now), recorded as
    a completed run: the ids read."""
    settings = load_settings(config)
    lake = Lake(settings.pipeline.lake)
    window = next_window(
        lake,
        end=end or utcnow(),
        overlap=timedelta(seconds=settings.pipeline.overlap_seconds),
        initial_lookback=timedelta(hours=settings.pipeline.initial_lookback_hours),
    )
    ctx = StageContext(
        run_id=run_id,
        flow="triage",
        window_start=window.start,
        window_end=window.end,
        window_source=window.source,
        config_path=str(config),
    )
    async with adapter_for(ctx) as adapter:
        manifest = await extract(ctx, adapter)
    record_stage(
        lake,
        run_id=run_id,
        flow="triage",
        stage="run",
        status="ok",
        started_at=manifest.started_at,
        window=window,
        partition=ctx.partition,
        high_water_mark=manifest.high_water_mark,
    )
    return {row["ticket_id"] for row in lake.read_paths("tickets", manifest.paths).to_pylist()}


@pytest.fixture(params=[-900, 900], ids=["freshdesk-behind", "freshdesk-ahead"])
def skewed(request, tmp_path, monkeypatch):
    """A simulator whose clock is 15 minutes off this machine's, and a config for it: (sim, config)."""
    config = SimulatorConfig(tickets=240, open_tickets=24, seed=11, clock_offset_seconds=request.param)
    with run_simulator(config) as simulator:
        monkeypatch.setenv("FRESHDESK_API_KEY", simulator.api_key)
        yield simulator, write_config(tmp_path / "triage.yml", simulator, tmp_path)


async def test_a_clock_skew_beyond_the_overlap_loses_no_ticket(skewed, adapter_for):
    """Freshdesk's clock 15 minutes off this machine's (overlap: 2 minutes): every edit is read by the
    first run whose window reaches Freshdesk's stamp of it, after a run that read nothing new."""
    sim, config = skewed
    first = await _incremental_run(config, adapter_for, "skew-1")
    assert await _incremental_run(config, adapter_for, "skew-2") <= first  # nothing new: only the overlap
    edited = sorted(sim.truth())[:3]
    for ticket_id in edited:
        sim.agent_edit(ticket_id, priority="Urgent")
    later = utcnow() + timedelta(seconds=max(sim.clock.offset, 0) + 60)
    third = await _incremental_run(config, adapter_for, "skew-3", end=later)
    assert set(edited) <= third and set(sim.truth()) <= first | third


def test_a_window_that_ends_before_it_starts_is_refused():
    """However it was given (a Prefect UI form, the API), a run never reads an inverted window silently."""
    with pytest.raises(ValueError, match=r"window_start .* is after window_end"):
        StageContext(
            run_id="r",
            flow="triage",
            window_start=NAIVE_END,
            window_end=NAIVE_START,
            window_source="explicit",
        )
