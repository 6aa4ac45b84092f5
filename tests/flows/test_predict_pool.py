"""Predict on a second work pool (the GPU pool's stand-in): a real `prefect server` (SQLite), two process
work pools and a worker on each. With ``pipeline.predict_deployment: predict/predict`` the hourly run on
pool ``triage`` starts predict as a run of ``predict/predict`` on pool ``gpu`` and waits for it; the
predictions equal the ones computed in this process; the hourly run fails after predict (key revoked), and its Retry
gets the completed predict run back (its idempotency key) instead of predicting again; nothing is
written twice.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import pytest
from flow_config import SIMULATOR, write_config
from prefect_server import GPU, POOL, Worker, eventually

from triage.lake import Lake
from triage.simulator import run_simulator
from triage.tasks.context import StageContext
from triage.tasks.manifest import ExtractManifest
from triage.tasks.predict import predict

pytestmark = [pytest.mark.slow, pytest.mark.deployment]


@pytest.fixture(scope="module")
def sim():
    with run_simulator(SIMULATOR) as simulator:
        yield simulator


def test_the_hourly_run_predicts_on_the_gpu_pool_once(deployment_server, trained, sim, tmp_path):
    server, lake = deployment_server, tmp_path / "lake"
    config = write_config(
        tmp_path / "triage.yml",
        sim.base_url,
        lake=lake,
        store=trained["store"],
        predict_deployment="predict/predict",
    )
    env = {"TRIAGE_CONFIG": str(config), "FRESHDESK_API_KEY": sim.api_key}
    predict_deployment = server.deployment("predict/predict")
    earlier = server.run_ids(predict_deployment["id"])  # other tests' on the shared server
    assert predict_deployment["work_pool_name"] == GPU
    assert predict_deployment["global_concurrency_limit"]["limit"] == 1
    assert server.api.get(f"/work_pools/{GPU}").json()["concurrency_limit"] == 1

    with Worker(server, POOL, "cpu", **env) as cpu, Worker(server, GPU, "gpu", **env) as gpu:
        # The first attempt fails after predict: decide's GET /ticket_fields is slow, and the key is revoked
        # once the predict run has completed (401 from then on). Then the key is fixed and the run retried.
        sim.faults.inject("latency", method="GET", path="/ticket_fields", seconds=10)
        response = server.run_deployment("triage/hourly")
        assert response.status_code == 201, response.text
        predicted = lambda: server.flow_runs(predict_deployment["id"], "COMPLETED", besides=earlier)  # noqa: E731
        assert eventually(predicted, timeout=300), gpu.log.read_text()[-3000:]
        key = sim.config
        sim.config = dataclasses.replace(key, api_key="revoked-" + key.api_key)
        hourly = server.wait(response.json()["id"], worker=cpu)
        assert hourly["state"]["type"] == "FAILED", (hourly["state"]["message"], cpu.log.read_text()[-3000:])
        assert "AuthenticationError" in hourly["state"]["message"]
        sim.config = key
        sim.faults.clear()
        first = predictions(Lake(lake), hourly["id"])
        server.retry_from_ui(hourly["id"])
        retried = server.wait(hourly["id"], worker=cpu)
    assert retried["state"]["type"] == "COMPLETED" and retried["run_count"] == 2, retried["state"]

    (child,) = server.flow_runs(predict_deployment["id"], besides=earlier)
    assert child["state"]["type"] == "COMPLETED" and child["run_count"] == 1
    assert (
        child["work_pool_name"] == GPU and child["parameters"]["params"]["context"]["run_id"] == hourly["id"]
    )
    child_tasks = Counter(
        (t["name"].split(" ")[0], t["state"]["name"]) for t in server.task_runs(child["id"])
    )
    assert child_tasks[("predict", "Completed")] == 1, child_tasks
    parent_tasks = {t["name"].split(" ")[0] for t in server.task_runs(hourly["id"])}
    assert "predict" not in parent_tasks, parent_tasks  # predicted on the gpu pool only

    # The retry got the same predict run back by its key, completed: not rerun. Its rows are the hourly
    # run's, once per ticket and field.
    again = predictions(Lake(lake), hourly["id"])
    assert again == first and len(first) >= 3 * 25
    stages = Counter(
        (r["stage"], r["status"]) for r in Lake(lake).scan("runs").to_pylist() if r["run_id"] == hourly["id"]
    )
    assert stages[("predict", "ok")] == 1 and stages[("run", "failed")] == stages[("run", "ok")] == 1, stages

    # Equal to predict in this process over the same tickets (reuse off: computed again).
    (record, *_) = [
        r for r in Lake(lake).scan("runs").to_pylist() if (r["run_id"], r["stage"]) == (hourly["id"], "run")
    ]
    ctx = StageContext(
        run_id="in-process",
        flow="triage",
        window_start=record["window_start"],
        window_end=record["window_end"],
        window_source="explicit",
        config_path=str(config),
        overrides={"pipeline": {"reuse_days": 0, "predict_deployment": None}},
    )
    parts = [p for p in Lake(lake).files("tickets") if f"/run={hourly['id']}/" in p]
    end = record["window_end"]
    tickets = ExtractManifest(run_id=hourly["id"], paths=parts, started_at=end, high_water_mark=end)
    predict(ctx, tickets)
    local = predictions(Lake(lake), "in-process")
    assert local.keys() == first.keys()
    for key, row in first.items():
        assert (row[0], row[2]) == (local[key][0], local[key][2]) and math.isclose(
            row[1], local[key][1], abs_tol=1e-5
        )

    written = _written(sim)
    assert written and max(written.values()) == 1, written


def predictions(lake: Lake, run_id: str) -> dict[tuple[int, str], tuple]:
    rows = [r for r in lake.scan("predictions").to_pylist() if r["run_id"] == run_id]
    keyed = {(r["ticket_id"], r["field"]): (r["label"], r["probability"], r["input_hash"]) for r in rows}
    assert len(keyed) == len(rows), "a ticket's field predicted twice"
    return keyed


def _written(sim) -> Counter:
    """Our field changes per (ticket, field), by the simulator's own change log."""
    return Counter(
        (c.ticket_id, name)
        for c in sim.changes
        if c.source in ("api", "bulk")
        for name in c.changes
        if name != "tags"
    )
