"""Two runs at once on one lake (a CLI run beside a deployment's): one waits or refuses, none writes twice."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from typer.testing import CliRunner

from triage.lake import Lake
from triage.lake.lease import hold
from triage.lake.runs import run_history
from triage.simulator.verdict import doubled

pytestmark = pytest.mark.flow


def test_two_runs_at_once_write_every_change_once(world, monkeypatch):
    import triage.tasks.push
    from triage.flows.incremental import TriageParams, triage_flow

    sim, config = world["sim"], world["config"]  # the second run waits (pipeline.lease_wait_seconds: 120)
    both_planned = threading.Barrier(2, timeout=3)
    real = triage.tasks.push.push

    async def together(*args, **kwargs):  # without a lease both runs would push side by side
        with contextlib.suppress(threading.BrokenBarrierError):
            await asyncio.to_thread(both_planned.wait)
        return await real(*args, **kwargs)

    monkeypatch.setattr(triage.tasks.push, "push", together)
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(triage_flow, TriageParams(config=str(config))) for _ in range(2)]
        summaries = [r.result(timeout=240) for r in runs]

    assert any(c.source in ("api", "bulk") for c in sim.changes), "the runs should write something"
    assert doubled(sim) == []
    lake = Lake(world["lake"])
    for summary in summaries:
        assert ("run", "ok") in [(r["stage"], r["status"]) for r in run_history(lake, summary.run_id)]


def test_a_run_refuses_a_lake_another_run_holds_with_one_line_and_no_traceback(world, monkeypatch, caplog):
    from triage.cli import app

    monkeypatch.setenv("TRIAGE_PIPELINE__LEASE_WAIT_SECONDS", "0")
    with hold(Lake(world["lake"]), run_id="deployment-run", flow="triage", ttl=60, wait=0):
        result = CliRunner().invoke(app, ["run", "--config", str(world["config"])])
    assert result.exit_code == 1, result.output
    refusal = result.output.strip().splitlines()[-1]
    assert refusal.startswith(
        f"error: the lake {world['lake']} is in use by run deployment-run (triage, host "
    )
    assert "pipeline.lease_wait_seconds" in refusal
    assert not any(r.exc_info for r in caplog.records) and "Traceback" not in caplog.text
    assert world["sim"].writes == []
