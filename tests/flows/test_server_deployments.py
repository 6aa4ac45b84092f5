"""The deployments as an operator runs them: a real `prefect server start` on PostgreSQL and on SQLite,
`prefect work-pool create`, `prefect deploy --all`, process workers, the scheduler, and a failed run
retried the way the UI's Retry button does it, on another worker. Writes are counted from the
simulator's own write log.

One server per database for the module (tests in order: deploy, schedules, runs, retry).
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from flow_config import SIMULATOR, write_config
from prefect_server import Server, Worker, database, eventually

from triage.lake import Lake
from triage.lake.runs import run_history
from triage.simulator import run_simulator

pytestmark = [pytest.mark.slow, pytest.mark.deployment]
POOL = "triage"
DEPLOYMENTS = {"triage/hourly", "nightly/nightly", "backfill/backfill", "train/train"}


@pytest.fixture(scope="module")
def sim():
    with run_simulator(SIMULATOR) as simulator:
        yield simulator


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def server(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"prefect-{request.param}")
    with database(request.param, folder) as url:
        # The scheduler looks for deployments to schedule every 5 s instead of every 60 s.
        server = Server(folder, url, PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5").start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def world(server, sim):
    """Configs (one lake for the deployment runs, one for the retry) and the worker's environment."""
    folder = server.folder
    store = folder / "models"
    config = write_config(folder / "triage.yml", sim.base_url, lake=folder / "lake", store=store)
    retry_config = write_config(folder / "retry.yml", sim.base_url, lake=folder / "retry-lake", store=store)
    env = {"TRIAGE_CONFIG": str(config), "FRESHDESK_API_KEY": sim.api_key}
    return {"config": config, "retry_config": retry_config, "env": env, "lake": Lake(folder / "lake")}


def ok(done) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_deploy_registers_every_deployment_as_prefect_yaml_says(server):
    deploy_env = server.client_env(
        PREFECT_HOME=str(server.folder / "cli-home"), TRIAGE_WORK_POOL=POOL, TRIAGE_PREDICT_WORK_POOL=POOL
    )
    ok(server.prefect("work-pool", "create", POOL, "--type", "process", env=deploy_env))
    ok(server.prefect("deploy", "--all", env=deploy_env))
    listed = ok(server.prefect("deployment", "ls"))
    assert all(name in listed for name in DEPLOYMENTS), listed
    ok(server.prefect("artifact", "ls"))

    hourly, nightly = server.deployment("triage/hourly"), server.deployment("nightly/nightly")
    for name in DEPLOYMENTS:
        deployment = server.deployment(name)
        assert deployment["work_pool_name"] == POOL and deployment["enforce_parameter_schema"], name
        assert deployment["global_concurrency_limit"]["limit"] == 1, name
        assert deployment["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $TRIAGE_HOME }}"}}
        ]
        assert "params" in deployment["parameter_openapi_schema"]["properties"], name
    assert hourly["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    (hourly_schedule,) = hourly["schedules"]
    (nightly_schedule,) = nightly["schedules"]
    assert (hourly_schedule["schedule"]["cron"], hourly_schedule["schedule"]["timezone"]) == (
        "0 * * * *",
        "Europe/Berlin",
    )
    assert nightly_schedule["schedule"]["cron"] == "30 2 * * *"
    assert nightly["parameters"] == {"params": {"days": 7, "retrain": True}}


def test_scheduler_creates_the_scheduled_runs_of_hourly_and_nightly(server):
    berlin = ZoneInfo("Europe/Berlin")
    wanted = {"triage/hourly": (None, 0), "nightly/nightly": (2, 30)}  # (hour, minute) in Berlin
    for name, (hour, minute) in wanted.items():
        deployment = server.deployment(name)
        runs = eventually(lambda d=deployment: server.flow_runs(d["id"], state="SCHEDULED"), timeout=90)
        assert runs, f"the scheduler created no run of {name}: {server.log.read_text()[-2000:]}"
        for run in runs:
            local = datetime.fromisoformat(run["expected_start_time"]).astimezone(berlin)
            assert (local.minute, local.second) == (minute, 0), (name, local)
            assert hour is None or local.hour == hour, (name, local)
            assert datetime.fromisoformat(run["expected_start_time"]) > datetime.now(UTC)
        # Pause it so no scheduled run starts during the next tests (they start runs themselves).
        server.api.patch(f"/deployments/{deployment['id']}", json={"paused": True}).raise_for_status()
        for run in server.flow_runs(deployment["id"], state="SCHEDULED"):
            server.api.delete(f"/flow_runs/{run['id']}").raise_for_status()
    assert "Can't evaluate bulk DML" not in server.log.read_text()


def test_every_deployment_runs_to_completed_on_a_worker(server, sim, world):
    sim.reset()
    with Worker(server, POOL, "a", **world["env"]) as worker:
        trained = _run(server, worker, "train/train", {"params": {"days": 400}})
        assert trained["state"]["type"] == "COMPLETED", trained["state"]

        sim.faults.inject("storm", next=1, method="GET", path="/tickets", retry_after=1)
        hourly = _run(server, worker, "triage/hourly")
        assert hourly["state"]["type"] == "COMPLETED", hourly["state"]
        written = [w for w in sim.writes if w.method in ("PUT", "POST") and w.status < 300]
        assert written, "the hourly run in apply mode wrote nothing"
        # The adapter's warning reaches the run's logs in the UI, not only the worker's stdout.
        assert any("rate limit reached" in line for line in server.logs(hourly["id"]))
        keys = {a["key"] for a in server.artifacts(hourly["id"])}
        assert {"triage-report", "triage-counts"} <= keys
        names = {t["name"] for t in server.task_runs(hourly["id"])}
        assert {n.split(" ")[0] for n in names} == {"extract", "predict", "decide", "push"}
        assert all(n.endswith(")") and "[" in n for n in names), names  # named by window

        nightly = _run(server, worker, "nightly/nightly")
        assert nightly["state"]["type"] == "COMPLETED", nightly["state"]
        end = datetime.now(UTC).replace(microsecond=0)
        span = {
            "start": (end - timedelta(hours=48)).isoformat(),
            "end": end.isoformat(),
            "mode": "shadow",
            "children": False,  # batches in this run's process; child runs: test_backfill_children.py
        }
        backfill = _run(server, worker, "backfill/backfill", {"params": span})
        assert backfill["state"]["type"] == "COMPLETED", backfill["state"]
        assert (
            len({t["name"] for t in server.task_runs(backfill["id"]) if t["name"].startswith("extract")}) == 2
        )

        # Parameters: a bad date is refused before a run exists; a reversed range fails at once, clearly.
        refused = server.run_deployment("backfill/backfill", {"params": {**span, "start": "not a date"}})
        assert refused.status_code == 409 and "params.start" in refused.text
        reversed_range = _run(
            server,
            worker,
            "backfill/backfill",
            {"params": {**span, "start": span["end"], "end": span["start"]}},
        )
        assert reversed_range["state"]["type"] == "FAILED"
        assert "end must be after start" in reversed_range["state"]["message"]
    stages = {(r["flow"], r["stage"], r["status"]) for r in world["lake"].scan("runs").to_pylist()}
    assert {
        ("train", "run", "ok"),
        ("triage", "run", "ok"),
        ("nightly", "run", "ok"),
        ("backfill", "run", "ok"),
    } <= stages


def test_a_failed_push_retried_from_the_ui_on_another_worker_reuses_extract_and_predict(server, sim, world):
    sim.reset()
    env = {**world["env"], "TRIAGE_CONFIG": str(world["retry_config"])}
    for method in ("PUT", "POST"):  # writes take a while, so the key can be revoked half-way
        sim.faults.inject("latency", method=method, seconds=0.3)
    key = sim.config
    with Worker(server, POOL, "b", **env) as first:
        response = server.run_deployment("triage/hourly")
        assert response.status_code == 201, response.text
        run_id = response.json()["id"]
        assert eventually(lambda: sum(_written(sim).values()) >= 2, timeout=300), first.log.read_text()[
            -3000:
        ]
        sim.config = dataclasses.replace(key, api_key="revoked-" + key.api_key)  # 401 from now on
        failed = server.wait(run_id, worker=first)
    assert failed["state"]["type"] == "FAILED", failed["state"]
    assert "AuthenticationError" in failed["state"]["message"]
    sim.config = key  # the operator fixes the key, then presses Retry
    sim.faults.clear()
    before = _written(sim)

    with Worker(server, POOL, "c", **env) as second:  # another worker, another PREFECT_HOME
        server.retry_from_ui(failed["id"])
        retried = server.wait(failed["id"], worker=second)
    assert retried["state"]["type"] == "COMPLETED", retried["state"]
    assert retried["run_count"] == 2

    states = Counter((t["name"].split(" ")[0], t["state"]["name"]) for t in server.task_runs(failed["id"]))
    assert states[("extract", "Cached")] == 1 and states[("predict", "Cached")] == 1, states
    assert states[("extract", "Completed")] == 1 and states[("push", "Failed")] == 1, states

    after = _written(sim)
    assert set(before) <= set(after) and max(after.values()) == 1, after  # nothing written twice
    lake = Lake(server.folder / "retry-lake")
    history = run_history(lake, failed["id"])
    attempts = {(r["stage"], r["status"], r["attempt"]) for r in history if r["stage"] in ("push", "run")}
    assert attempts == {("push", "failed", 1), ("run", "failed", 1), ("push", "ok", 2), ("run", "ok", 2)}
    # The run's record and report describe both attempts: every write, not only the retry's.
    audit = lake.scan("audit").to_pylist()
    latest = {
        (r["ticket_id"], r["field"]): r["status"] for r in sorted(audit, key=_when) if r["phase"] == "result"
    }
    written_ok = sum(status == "ok" for status in latest.values())
    (record,) = [r for r in history if r["stage"] == "run" and r["attempt"] == 2]
    (push_2,) = [r for r in history if r["stage"] == "push" and r["attempt"] == 2]
    assert record["rows_out"] == len(audit) > push_2["rows_out"]  # the push stage row: its own attempt
    (table,) = [a for a in server.artifacts(failed["id"]) if a["key"] == "triage-counts"]
    rows = json.loads(table["data"]) if isinstance(table["data"], str) else table["data"]
    reported_ok = sum(
        r["count"] for r in rows if r["stage"] == "push" and r["outcome"] == "ok" and r["field"] != "*"
    )
    # The latest result of each write, whichever attempt made it (writes cut off in attempt 1 are
    # confirmed by attempt 2's re-read).
    assert reported_ok == written_ok > 0
    progress = [a for a in server.artifacts(failed["id"]) if a["type"] == "progress"]
    assert progress and all(a["data"] == 100.0 for a in progress), progress  # no stale bars
    assert len({a["description"] for a in progress}) == len(progress)


def _run(server: Server, worker: Worker, name: str, parameters: dict | None = None) -> dict:
    response = server.run_deployment(name, parameters)
    assert response.status_code == 201, response.text
    return server.wait(response.json()["id"], worker=worker)


def _written(sim) -> Counter:
    """Successful writes per (ticket, field), from the simulator's own request log."""
    counts: Counter = Counter()
    for w in sim.writes:
        if w.status >= 300 or w.method not in ("PUT", "POST") or not isinstance(w.body, dict):
            continue
        if w.path.endswith("/bulk_update"):
            ids, fields = (
                w.body.get("bulk_action", {}).get("ids", []),
                w.body.get("bulk_action", {}).get("properties", {}),
            )
        elif "/notes" in w.path:
            continue
        else:
            ids, fields = [int(w.path.rstrip("/").rsplit("/", 1)[-1])], w.body
        for ticket in ids:
            for field in fields:
                if field != "tags":
                    counts[(ticket, field)] += 1
    return counts


def _when(row: dict):
    return row["completed_at"] or row["sent_at"]
