"""Predict's parts on a 2-worker Dask ``LocalCluster`` (``pipeline.dask_address: 2``) give the predictions
of the single-process run, row for row; reuse works on that path; a killed attempt's parts are replaced.

The 30 open tickets are cut into parts of 8 (four parts) so both workers compute some.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import triage.tasks.predict as predict_stage
from triage.flows.incremental import RunSummary, TriageParams, triage_flow
from triage.lake import Lake
from triage.tasks.context import StageContext
from triage.tasks.manifest import ExtractManifest
from triage.tasks.predict_parts import dask_parts, dask_runner

pytestmark = pytest.mark.flow
PART = 8


def predictions(lake: Lake, run_id: str) -> dict[tuple[int, str], dict]:
    rows = [r for r in lake.scan("predictions").to_pylist() if r["run_id"] == run_id]
    keyed = {(r["ticket_id"], r["field"]): r for r in rows}
    assert len(keyed) == len(rows), "a ticket's field predicted twice"
    return keyed


def same(a: dict, b: dict) -> bool:
    return (
        a["label"] == b["label"]
        and math.isclose(a["probability"], b["probability"], abs_tol=1e-5)
        and a["input_hash"] == b["input_hash"]
        and a["model_version"] == b["model_version"]
        and [k["label"] for k in a["top_k"]] == [k["label"] for k in b["top_k"]]
    )


def dask_context(run_id: str, run: RunSummary, config: Path, address: str) -> StageContext:
    """A shadow-mode context over ``run``'s window that predicts afresh (no reuse) on Dask ``address``."""
    return StageContext(
        run_id=run_id,
        flow="triage",
        window_start=run.window_start,
        window_end=run.window_end,
        window_source="explicit",
        config_path=str(config),
        overrides={"pipeline": {"mode": "shadow", "reuse_days": 0, "dask_address": address}},
    )


def test_predict_on_a_two_worker_local_cluster_equals_the_single_process_run(world, monkeypatch):
    monkeypatch.setattr(predict_stage, "CHUNK_ROWS", PART)
    config, lake = str(world["config"]), Lake(world["lake"])
    single = triage_flow(TriageParams(config=config, mode="shadow"))  # shadow: the tickets stay as they are
    window = {"since": single.window_start, "until": single.window_end, "mode": "shadow"}

    monkeypatch.setenv("TRIAGE_PIPELINE__DASK_ADDRESS", "2")
    monkeypatch.setenv("TRIAGE_PIPELINE__REUSE_DAYS", "0")  # computed again, on the cluster
    on_dask = triage_flow(TriageParams(config=config, **window))
    expected, got = predictions(lake, single.run_id), predictions(lake, on_dask.run_id)
    assert len(expected) >= 3 * 25 and expected.keys() == got.keys()
    assert all(same(expected[k], got[k]) for k in expected), [
        k for k in expected if not same(expected[k], got[k])
    ]
    stage, tickets = on_dask.stages["predict"], len(expected) // 3
    assert len(stage["paths"]) == math.ceil(tickets / PART) and stage["rows"] == len(expected)
    assert on_dask.counts["predict"]["*"] == {"tickets_reused": 0, "tickets_computed": tickets}

    # The same window again on the Dask path with reuse on: every prediction reused, the same outputs.
    monkeypatch.delenv("TRIAGE_PIPELINE__REUSE_DAYS")
    again = triage_flow(TriageParams(config=config, **window))
    reused = predictions(lake, again.run_id)
    assert again.counts["predict"]["*"] == {"tickets_reused": tickets, "tickets_computed": 0}
    assert {r["reused_from_run"] for r in reused.values()} == {on_dask.run_id}
    assert all(same(expected[k], reused[k]) for k in expected)


def test_a_killed_attempt_on_dask_leaves_no_extra_rows(world, monkeypatch):
    """The first attempt dies after one part; the next one replaces that part: each row once."""
    monkeypatch.setattr(predict_stage, "CHUNK_ROWS", PART)
    first = triage_flow(TriageParams(config=str(world["config"]), mode="shadow"))
    ctx = dask_context("killed-run", first, world["config"], "2")
    tickets = ExtractManifest.model_validate(first.stages["extract"])
    cluster = dask_parts("2")

    def killed(jobs):
        yield next(iter(cluster(jobs[:1])))
        raise KeyboardInterrupt("the run's process is killed")

    with pytest.raises(KeyboardInterrupt):
        predict_stage.predict(ctx, tickets, run_parts=killed)
    lake = Lake(world["lake"])
    assert 0 < len(predictions(lake, ctx.run_id)) < len(predictions(lake, first.run_id))

    manifest = predict_stage.predict(ctx, tickets, run_parts=cluster)
    done = predictions(lake, ctx.run_id)
    assert done.keys() == predictions(lake, first.run_id).keys() and manifest.rows == len(done)


def test_the_dask_address_is_local_a_worker_count_or_a_scheduler(monkeypatch):
    from triage.errors import ConfigError
    from triage.settings import load_settings

    for given, runner in (("local", {}), (2, {"n_workers": 2}), ("tcp://10.0.0.5:8786", None)):
        monkeypatch.setenv("TRIAGE_PIPELINE__DASK_ADDRESS", str(given))
        address = load_settings().pipeline.dask_address
        assert address == str(given)
        task_runner = dask_runner(address)
        if runner is None:
            assert task_runner.address == address and not task_runner.cluster_kwargs
        else:
            assert task_runner.address is None
            assert task_runner.cluster_kwargs == {
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
                **runner,
            }
    for bad in ("0", "two", "10.0.0.5:8786"):
        monkeypatch.setenv("TRIAGE_PIPELINE__DASK_ADDRESS", bad)
        with pytest.raises(ConfigError, match="dask_address"):
            load_settings()


def test_an_existing_cluster_by_address_gives_the_same_predictions(world, monkeypatch):
    """``tcp://host:port``: a running cluster (started here, one worker process) does the parts."""
    from distributed import LocalCluster

    monkeypatch.setattr(predict_stage, "CHUNK_ROWS", PART)
    single = triage_flow(TriageParams(config=str(world["config"]), mode="shadow"))
    tickets = ExtractManifest.model_validate(single.stages["extract"])
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://")
        ctx = dask_context("on-a-running-cluster", single, world["config"], address)
        predict_stage.predict(ctx, tickets, run_parts=dask_parts(ctx.settings().pipeline.dask_address))
    lake = Lake(world["lake"])
    expected, got = predictions(lake, single.run_id), predictions(lake, ctx.run_id)
    assert expected.keys() == got.keys() and all(same(expected[k], got[k]) for k in expected)
