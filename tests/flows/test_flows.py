"""The flows end to end under Prefect against the simulator, with a model trained by the train flow.

Most behaviour is asserted on the plain stages (tests/pipeline); these tests check what only a real
flow run shows: the stages wired together, the window from the lake, retries reusing cached stages,
resumable backfills, the nightly comparison, artifacts.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pyarrow.compute as pc
import pytest

from triage.lake import Lake
from triage.lake.runs import run_history, utcnow
from triage.models.store import ModelStore

pytestmark = pytest.mark.flow


def ok_writes(lake: Lake, run_id: str | None = None) -> set[tuple[int, str]]:
    rows = lake.scan(
        "audit", filter=(pc.field("phase") == "result") & (pc.field("status") == "ok")
    ).to_pylist()
    return {(r["ticket_id"], r["field"]) for r in rows if run_id is None or r["run_id"] == run_id}


def test_train_flow_learns_from_the_resolved_history_and_promotes(trained):
    manifest = trained["manifest"]
    assert manifest.promoted and ModelStore(trained["store"]).current().version == manifest.model_version
    assert set(manifest.metrics) == {"group", "priority", "type"}
    tickets = Lake(trained["lake"]).scan("tickets").to_pylist()
    assert tickets and {t["purpose"] for t in tickets} == {"history"}
    assert all(t["status"] in (4, 5) for t in tickets if t["skip_reason"] is None)
    stages = [(r["stage"], r["status"]) for r in run_history(Lake(trained["lake"]), manifest.run_id)]
    assert sorted(stages) == [("extract", "ok"), ("run", "ok"), ("train", "ok")]
    bars = {a["description"]: a["data"] for a in json.loads(artifacts_of(manifest.run_id))}
    phases = ["preparation", "embedding", "features", "head selection", "final fit", "evaluation", "saving"]
    assert all(bars.get(f"train {phase}: progress") == 100.0 for phase in phases), bars  # a bar per phase


def test_triage_flow_applies_what_is_safe_and_reruns_write_nothing(world):
    from triage.flows.incremental import TriageParams, triage_flow

    sim, lake = world["sim"], Lake(world["lake"])
    first = triage_flow(TriageParams(config=str(world["config"])))
    open_ids = set(sim.truth())
    predicted = lake.read_partition("predictions", date=first.window_end, run_id=first.run_id).to_pylist()
    decided = lake.read_partition("decisions", date=first.window_end, run_id=first.run_id).to_pylist()
    assert open_ids <= {p["ticket_id"] for p in predicted}
    for field in ("group", "priority", "type"):
        assert open_ids <= {d["ticket_id"] for d in decided if d["field"] == field}

    applied = {(d["ticket_id"], d["field"]): d for d in decided if d["action"] == "apply"}
    assert applied, "the model should be confident about some tickets"
    assert ok_writes(lake, first.run_id) == set(applied)
    labels = sim.labels()
    for d in applied.values():
        assert d["label"] in labels[d["field"]]
        assert d["reason_code"] == "fallback" or d["probability"] >= d["apply_threshold"]
    assert {c.ticket_id for c in sim.changes if c.source in ("api", "bulk")} == {t for t, _ in applied}

    writes = len(sim.writes)
    again = triage_flow(
        TriageParams(config=str(world["config"]), since=first.window_start, until=first.window_end)
    )
    assert len(sim.writes) == writes and again.run_id != first.run_id
    time.sleep(2.1)  # whole-second times (a change in the same second moves one second on): end after them
    following = triage_flow(TriageParams(config=str(world["config"])))  # incremental: meets our own writes
    assert len(sim.writes) == writes
    marked = lake.read_partition("tickets", date=following.window_end, run_id=following.run_id)
    own = marked.filter(pc.field("skip_reason") == "own_write").column("ticket_id").to_pylist()
    assert set(own) == {t for t, _ in applied}
    newest = pc.max(lake.read_partition("tickets", date=first.window_end, run_id=first.run_id)["updated_at"])
    assert following.window_start == newest.as_py() - timedelta(seconds=120)  # watermark minus overlap


def artifacts_of(run_id: str) -> str:
    """The Prefect API's JSON answer listing the artifacts of flow run ``run_id``."""
    from prefect import get_client

    query = {"flow_runs": {"id": {"any_": [run_id]}}, "limit": 200, "offset": 0, "sort": "CREATED_DESC"}
    with get_client(sync_client=True) as client:
        return client.request("POST", "/artifacts/filter", json=query).text


def test_the_run_leaves_artifacts(world):
    from triage.flows.incremental import TriageParams, triage_flow

    summary = triage_flow(TriageParams(config=str(world["config"]), mode="shadow"))
    artifacts = json.loads(artifacts_of(summary.run_id))
    kinds = {a["type"] for a in artifacts}
    assert {"table", "markdown", "progress"} <= kinds  # Prefect stores link artifacts as Markdown links
    texts = [a["data"] for a in artifacts if a["type"] == "markdown"]
    assert any(summary.run_id in t and "shadow" in t and "| decide |" in t for t in texts)  # the run report
    assert any(t.startswith("[decisions: ") and "file://" in t for t in texts)  # a link to a lake partition
    assert world["sim"].writes == []  # shadow mode: the simulator's write log stays empty


def test_a_failed_run_retried_reuses_extract_and_predict(world, monkeypatch):
    import triage.tasks.push
    from triage.flows.incremental import TriageParams, triage_flow

    real, calls = triage.tasks.push.push, []

    async def fails_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("push broke")
        return await real(*args, **kwargs)

    monkeypatch.setattr(triage.tasks.push, "push", fails_once)
    summary = triage_flow.with_options(retries=1, retry_delay_seconds=0)(
        TriageParams(config=str(world["config"]))
    )
    stages = [(r["stage"], r["status"]) for r in run_history(Lake(world["lake"]), summary.run_id)]
    assert stages.count(("extract", "ok")) == 1 and stages.count(("predict", "ok")) == 1  # cached on retry
    assert ("run", "failed") in stages and ("run", "ok") in stages
    assert ok_writes(Lake(world["lake"]), summary.run_id)


def test_backfill_resumes_after_a_failed_batch(world, monkeypatch):
    import triage.tasks.decide
    from triage.flows.backfill import BackfillParams, backfill_flow

    end = utcnow().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    params = BackfillParams(
        start=end - timedelta(hours=48), end=end, batch_hours=24, mode="shadow", config=str(world["config"])
    )
    real, calls = triage.tasks.decide.decide, []

    def second_batch_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("decide broke")
        return real(*args, **kwargs)

    monkeypatch.setattr(triage.tasks.decide, "decide", second_batch_fails)
    with pytest.raises(RuntimeError, match="decide broke"):
        backfill_flow(params)
    resumed = backfill_flow(params)
    assert (resumed.batches, resumed.skipped, len(resumed.processed)) == (2, 1, 1)
    runs = (
        Lake(world["lake"])
        .scan("runs", filter=(pc.field("stage") == "run") & (pc.field("status") == "ok"))
        .to_pylist()
    )
    assert sorted((r["window_start"], r["window_end"]) for r in runs) == [
        (end - timedelta(hours=48), end - timedelta(hours=24)),
        (end - timedelta(hours=24), end),
    ]


def test_nightly_compares_predictions_with_the_values_agents_finally_set(world):
    from triage.flows.incremental import TriageParams, triage_flow
    from triage.flows.nightly import NightlyParams, nightly_flow

    sim, lake = world["sim"], Lake(world["lake"])
    run = triage_flow(TriageParams(config=str(world["config"])))
    written = sorted(t for t, f in ok_writes(lake, run.run_id) if f == "group")
    assert len(written) >= 2
    kept, changed = written[0], written[1]
    ours = {
        a["ticket_id"]: a["label"]
        for a in lake.scan("audit").to_pylist()
        if a["status"] == "ok" and a["field"] == "group"
    }
    other = next(g for g in sim.labels()["group"] if g != ours[changed])
    sim.agent_edit(kept, status=4)
    sim.agent_edit(changed, status=4, group=other)
    time.sleep(2.1)  # whole-second times (a change in the same second moves one second on): end after them

    outcomes = nightly_flow(NightlyParams(config=str(world["config"]), retrain=False))
    rows = {(r["ticket_id"], r["field"]): r for r in lake.read_paths("outcomes", outcomes.paths).to_pylist()}
    assert rows[(kept, "group")]["written"] and not rows[(kept, "group")]["overridden"]
    assert rows[(kept, "group")]["final_label"] == ours[kept]
    assert rows[(changed, "group")]["overridden"] and rows[(changed, "group")]["final_label"] == other
    assert outcomes.summary["group"]["overridden"] == 1


def test_the_api_key_is_nowhere_in_the_lake_the_artifacts_or_the_persisted_results(world, caplog):
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH

    from triage.flows.incremental import TriageParams, triage_flow

    key = world["sim"].api_key
    with caplog.at_level("DEBUG"):
        summary = triage_flow(TriageParams(config=str(world["config"])))
    lake = Lake(world["lake"])
    for table in ("tickets", "predictions", "decisions", "audit", "runs", "quarantine"):
        assert key not in str(lake.scan(table).to_pylist()), table
    assert key not in artifacts_of(summary.run_id)
    results = Path(PREFECT_RESULTS_LOCAL_STORAGE_PATH.value())
    assert all(key.encode() not in path.read_bytes() for path in results.rglob("*") if path.is_file())
    assert all(key.encode() not in path.read_bytes() for path in world["tmp"].rglob("*") if path.is_file())
    assert key not in caplog.text


def test_the_api_key_can_come_from_a_prefect_secret_block(world, monkeypatch):
    from prefect.blocks.system import Secret

    from triage.flows.incremental import TriageParams, triage_flow

    Secret(value=world["sim"].api_key).save("freshdesk-api-key-test", overwrite=True)
    monkeypatch.delenv("FRESHDESK_API_KEY")
    monkeypatch.setenv("FRESHDESK_API_KEY_SECRET_BLOCK", "freshdesk-api-key-test")
    summary = triage_flow(TriageParams(config=str(world["config"]), mode="shadow"))
    assert summary.counts["extract"]["*"]["read"] > 0  # the adapter authenticated with the block's key
