"""A `triage run` SIGKILLed during extract, predict or decide, then rerun: the rerun completes and, by the
simulator's own logs, writes lost 0, doubled 0, agent values overwritten 0.

The run is a real `triage run --config ...` in a child process (on the session's Prefect harness). It is
killed once the lake shows the stage's first output part for it: the stage has written output but not
finished (no ``ok`` row in ``runs``). A kill during push is
``tests/pipeline/test_stages.py::test_a_crash_in_the_middle_of_push_then_a_rerun_writes_everything_exactly_once``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from flow_config import write_config
from typer.testing import CliRunner

from triage.lake import Lake
from triage.simulator.verdict import judge, native_value

pytestmark = pytest.mark.flow

#: `triage run`, paused for the test's SIGKILL right after the stage's first part reaches the lake
#: (without the pause a 30-ticket stage ends before a poll could see it).
KILLED_RUN = textwrap.dedent(
    """
    import sys, time
    from triage.lake import Lake

    table, real = sys.argv[1], Lake.write

    def write(self, written, *args, **kwargs):
        part = real(self, written, *args, **kwargs)
        if written == table:
            time.sleep(300)
        return part

    Lake.write = write
    from triage.cli import main

    sys.argv = ["triage", "run", "--config", sys.argv[2]]
    main()
    """
)
STAGE_TABLE = {"extract": "tickets", "predict": "predictions", "decide": "decisions"}


def kill_during(stage: str, config: Path, lake: Path, tmp: Path) -> str:
    """Start `triage run`, SIGKILL it once the lake holds the stage's first part; returns the run id."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    log = tmp / f"killed-{stage}.log"
    with log.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_RUN, STAGE_TABLE[stage], str(config)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        parts: list[Path] = []
        while not parts and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            parts = list((lake / STAGE_TABLE[stage]).glob("date=*/run=*/*.parquet"))
        assert parts, f"no {stage} output before the deadline:\n{log.read_text(errors='replace')[-3000:]}"
    finally:
        child.kill()  # SIGKILL
        child.wait()  # reaped: its PID is gone, so the lease it held is followed at once
    assert child.returncode == -signal.SIGKILL
    return parts[0].parent.name.removeprefix("run=")


@pytest.mark.parametrize("stage", list(STAGE_TABLE))
def test_a_run_killed_during_a_stage_is_rerun_without_losing_doubling_or_overwriting(world, trained, stage):
    from triage.cli import app
    from triage.lake.runs import run_history

    sim, lake_dir = world["sim"], world["lake"]
    config = write_config(
        world["config"],
        sim.base_url,
        lake=lake_dir,
        store=trained["store"],
        lease_seconds=5,
        extract_batch_size=10,
    )
    killed = kill_during(stage, config, lake_dir, world["tmp"])
    lake = Lake(lake_dir)
    done = {(r["stage"], r["status"]) for r in run_history(lake, killed)}
    assert (stage, "ok") not in done and ("run", "ok") not in done  # killed inside the stage
    assert not [c for c in sim.changes if c.source in ("api", "bulk")]

    target = min(sim.truth())  # an agent sets a ticket the killed run has read or decided
    group = next(g for g in sim.labels()["group"] if g != sim.truth()[target]["group"])
    sim.agent_edit(target, group=group, tags=["customer-vip"])
    time.sleep(2.1)  # whole-second times: the rerun's window (it ends when the run starts) holds the edit

    rerun = CliRunner().invoke(app, ["run", "--config", str(config)])
    assert rerun.exit_code == 0, rerun.output
    (run,) = [r for r in lake.scan("runs").to_pylist() if (r["stage"], r["status"]) == ("run", "ok")]
    decisions = lake.read_partition("decisions", date=run["window_end"], run_id=run["run_id"]).to_pylist()
    assert set(sim.truth()) <= {d["ticket_id"] for d in decisions}  # the whole window read again
    wanted = {
        (d["ticket_id"], d["field"]): native_value(sim, d["field"], d["label"])
        for d in decisions
        if d["action"] == "apply"
    }
    assert len(wanted) >= 5
    assert judge(sim, wanted) == {"lost": [], "doubled": [], "overwritten": []}
    edited = sim.ticket(target)  # the agent's group and tag kept
    assert sim.store.account.groups.get(edited["group_id"]) == group and "customer-vip" in edited["tags"]
