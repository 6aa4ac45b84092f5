"""A backfill in child runs on a real server, killed half way and resumed, writes each change once.

`prefect server start` (SQLite), `prefect deploy --all`, a process worker: the backfill deployment
splits a 12-hour range into 4 batches, each a child run of ``triage/hourly`` in apply mode. Once two
children have completed and the third is writing, the worker is SIGKILLed with every flow-run process
under it; the runs it left Running are marked Crashed (what Prefect's zombie-run automation or an
operator does). A new backfill over the same range on a new worker skips the two completed batches,
runs the crashed child again (the same flow run, attempt 2) and starts the fourth. By the simulator's
own logs: nothing written twice, nothing lost, no agent value overwritten; one child run per batch.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from flow_config import SIMULATOR, write_config
from prefect_server import POOL, TERMINAL, Server, Worker, eventually

from triage.lake import Lake
from triage.simulator import run_simulator
from triage.simulator.verdict import judge, native_value

pytestmark = [pytest.mark.slow, pytest.mark.deployment]
BATCHES = 4


@pytest.fixture(scope="module")
def sim():
    with run_simulator(SIMULATOR) as simulator:
        yield simulator


def test_a_backfill_in_child_runs_killed_half_way_and_resumed_writes_each_change_once(
    deployment_server, trained, sim, tmp_path
):
    server = deployment_server
    config = write_config(
        tmp_path / "triage.yml", sim.base_url, lake=tmp_path / "lake", store=trained["store"]
    )
    env = {"TRIAGE_CONFIG": str(config), "FRESHDESK_API_KEY": sim.api_key}
    hourly = server.deployment("triage/hourly")["id"]
    earlier = server.run_ids(hourly)  # other tests' on the shared server

    first = Worker(server, POOL, "first", **env).__enter__()
    try:
        for method in ("PUT", "POST"):  # writes take a while: the worker dies during a batch's push
            sim.faults.inject("latency", method=method, seconds=1.0)
        end = datetime.now(UTC).replace(microsecond=0)  # the open tickets arrived in the last 12 h
        span = {"start": (end - timedelta(hours=12)).isoformat(), "end": end.isoformat()}
        params = {**span, "batch_hours": 12 // BATCHES, "mode": "apply"}
        killed_parent = server.create_run("backfill/backfill", {"params": params}, "first")["id"]

        baseline: list[int] = []

        def third_batch_writing() -> bool:
            parent = server.flow_run(killed_parent)["state"]
            assert parent["type"] not in TERMINAL, (parent, first.log.read_text()[-3000:])
            children = server.flow_runs(hourly, besides=earlier)
            done = sum(c["state"]["type"] == "COMPLETED" for c in children)
            running = any(c["state"]["type"] == "RUNNING" for c in children)
            assert done <= 2, "the worker was not killed in time"
            if done == 2 and not baseline:
                baseline.append(len(_changes(sim)))
            return done == 2 and running and len(_changes(sim)) > baseline[0]

        assert eventually(third_batch_writing, timeout=400), first.log.read_text()[-3000:]
    finally:
        killed = first.kill()
    assert len(killed) >= 3  # the worker, the backfill and the third child
    stale = [r for r in server.post("/flow_runs/filter", {}) if r["state"]["type"] in ("RUNNING", "PENDING")]
    assert {r["id"] for r in stale} >= {killed_parent}
    for run in stale:
        server.crash(run["id"], "worker lost")
    sim.faults.clear()
    before = _ticket_writes(sim)
    assert before and max(before.values()) == 1

    with Worker(server, POOL, "second", **env) as second:
        resumed = _run(server, second, "backfill/backfill", {"params": params}, key="resumed")
    assert resumed["state"]["type"] == "COMPLETED", resumed["state"]

    # One child run per batch; the two completed before the kill ran once, the crashed one twice.
    children = server.flow_runs(hourly, besides=earlier)
    per_batch = Counter(
        (c["parameters"]["params"]["since"], c["parameters"]["params"]["until"]) for c in children
    )
    assert len(per_batch) == BATCHES and set(per_batch.values()) == {1}, per_batch
    assert all(c["state"]["type"] == "COMPLETED" for c in children), [c["state"] for c in children]
    assert sorted(c["run_count"] for c in children) == [1, 1, 1, 2]
    assert {c["parameters"]["params"]["mode"] for c in children} == {"apply"}
    (rerun,) = [c for c in children if c["run_count"] == 2]  # killed during push: extract, predict reused
    states = Counter((t["name"].split(" ")[0], t["state"]["name"]) for t in server.task_runs(rerun["id"]))
    assert states[("extract", "Cached")] == 1 and states[("predict", "Cached")] == 1, states

    # By the simulator's own logs: each change written once, none lost, no agent value overwritten.
    lake = Lake(tmp_path / "lake")
    runs = [r for r in lake.scan("runs").to_pylist() if (r["stage"], r["status"]) == ("run", "ok")]
    windows = {(r["window_start"], r["window_end"]) for r in runs if r["flow"] == "triage"}
    assert len(windows) == BATCHES and all(
        r["window_source"] == "explicit" for r in runs if r["flow"] == "triage"
    )
    wanted = {
        (d["ticket_id"], d["field"]): native_value(sim, d["field"], d["label"])
        for d in lake.scan("decisions").to_pylist()
        if d["action"] == "apply"
    }
    assert len(wanted) >= 5
    assert judge(sim, wanted) == {"lost": [], "doubled": [], "overwritten": []}
    after = _ticket_writes(sim)
    assert set(before) < set(after) and max(after.values()) == 1, after

    # The parents' progress over batches: the killed one stopped half way, the resumed one ends at 100.
    assert _progress(server, killed_parent) == [50.0]
    assert _progress(server, resumed["id"]) == [100.0]
    (table,) = [a for a in server.artifacts(resumed["id"]) if a["key"] == "backfill-children"]
    assert "completed before" not in str(table["data"])  # completed batches were skipped, not asked for


def _run(server: Server, worker: Worker, name: str, parameters: dict, key: str) -> dict:
    """A run of deployment ``name``, waited for until it ends; the run."""
    return server.wait(server.create_run(name, parameters, key)["id"], worker=worker)


def _progress(server: Server, run_id: str) -> list[float]:
    return [a["data"] for a in server.artifacts(run_id) if a["type"] == "progress"]


def _changes(sim) -> list:
    """Our changes to tickets (API writes and bulk jobs), by the simulator's change log."""
    return [c for c in sim.changes if c.source in ("api", "bulk")]


def _ticket_writes(sim) -> Counter:
    """Changes our writes made, per (ticket, native field), by the simulator's change log."""
    return Counter((c.ticket_id, name) for c in _changes(sim) for name in c.changes if name != "tags")


def test_a_batch_child_key_names_the_batch_mode_deployment_and_lake_never_the_backfill_run(tmp_path):
    from triage.flows.backfill import child_key

    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = start + timedelta(hours=24)
    lake, other = Lake(tmp_path / "lake"), Lake(tmp_path / "other")
    key = child_key("triage/hourly", lake, "apply", start, end)
    assert key == child_key("triage/hourly", Lake(tmp_path / "x" / ".." / "lake"), "apply", start, end)
    assert (
        len(
            {
                key,
                child_key("triage/hourly", other, "apply", start, end),
                child_key("triage/hourly", lake, "shadow", start, end),
                child_key("triage/other", lake, "apply", start, end),
                child_key("triage/hourly", lake, "apply", start, end + timedelta(hours=1)),
            }
        )
        == 5
    )
