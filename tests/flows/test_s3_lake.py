"""The lake, the cached stage results, the lake's lease and the model store on an S3 API server (moto's,
on loopback).

The endpoint is given as people give it: ``AWS_ENDPOINT_URL`` and the usual AWS credentials in the
environment, read by pyarrow (the lake, the lease, the model store), s3fs (Prefect's cached results) and
boto3 alike. The train flow and a triage flow in apply mode run against it; the train flow saves its
model to the store on S3 and the triage flow, with a cache of its own (another worker), predicts with
it from there. The triage run's push writes, then fails, and the retried run must get extract and
predict back from the results on S3 and write nothing twice (the audit trail on S3 is the idempotency
record).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
from flow_config import write_config
from s3_server import s3_server

from triage.adapters.freshdesk.updates import NATIVE_KEYS
from triage.lake import Lake
from triage.lake.lease import LakeBusyError, LakeLease, hold
from triage.lake.runs import run_history
from triage.models.store import CURRENT_FILE, VERSIONS_DIR, ModelStore

pytestmark = pytest.mark.flow

BUCKET = "triage-ci"
LAKE = f"s3://{BUCKET}/lake"
STORE = f"s3://{BUCKET}/models"


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    with s3_server(BUCKET) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def s3_run(s3, prefect_harness, session_sim, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """Train, then triage in apply mode with a push that writes and then fails once, all on S3."""
    import triage.tasks.push
    from triage.flows.incremental import TriageParams, triage_flow
    from triage.flows.train import TrainParams, train_flow
    from triage.models.loading import clear_cache

    session_sim.reset()
    folder = tmp_path_factory.mktemp("s3")
    config = write_config(folder / "triage.yml", session_sim.base_url, lake=LAKE, store=STORE)
    real, attempts = triage.tasks.push.push, []

    async def writes_then_fails(*args: Any, **kwargs: Any) -> Any:
        done = await real(*args, **kwargs)
        attempts.append(done)
        if len(attempts) == 1:
            raise RuntimeError("push crashed after writing")
        return done

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FRESHDESK_API_KEY", session_sim.api_key)
        patch.setenv("XDG_CACHE_HOME", str(folder / "trainer"))  # the store's local cache on each machine
        trained = train_flow(TrainParams(config=str(config), days=400))
        patch.setenv("XDG_CACHE_HOME", str(folder / "worker"))
        clear_cache()  # a worker that has not loaded the model yet
        patch.setattr(triage.tasks.push, "push", writes_then_fails)
        triaged = triage_flow.with_options(retries=1, retry_delay_seconds=0)(TriageParams(config=str(config)))
    yield {
        "sim": session_sim,
        "trained": trained,
        "triaged": triaged,
        "attempts": len(attempts),
        "caches": {
            name: folder / name / "triage" / "models" / "s3" / BUCKET / "models"
            for name in ("trainer", "worker")
        },
    }


def objects(prefix: str) -> dict[str, bytes]:
    """Every object under ``<bucket>/<prefix>`` on the S3 server, read through boto3."""
    import boto3

    client = boto3.client("s3")
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        for o in page.get("Contents", [])
    ]
    return {k: client.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys}


def test_the_train_flow_reads_history_into_an_s3_lake(s3_run):
    trained = s3_run["trained"]
    assert trained.promoted
    lake = Lake(LAKE)
    history = lake.scan("tickets", filter=pc.field("run_id") == trained.run_id)
    assert history.num_rows and set(history["purpose"].to_pylist()) == {"history"}
    assert ("train", "ok") in [(r["stage"], r["status"]) for r in run_history(lake, trained.run_id)]


def test_the_train_flow_saves_its_model_to_the_s3_store_and_a_worker_predicts_from_there(s3_run):
    trained, run, caches = s3_run["trained"], s3_run["triaged"], s3_run["caches"]
    version = trained.model_version
    stored = objects("models/")
    assert f"models/{VERSIONS_DIR}/{version}/model.json" in stored
    assert f"models/{VERSIONS_DIR}/{version}/heads.safetensors" in stored
    assert json.loads(stored[f"models/{CURRENT_FILE}"])["version"] == version
    current = ModelStore(STORE, cache=caches["worker"]).current()
    assert current is not None and current.version == version and current.promotion.promoted
    # The train flow kept its copy; the triage flow's worker downloaded the version into its own cache
    # (the embedding cache and encoders stay there too, never in the working directory).
    for cache in caches.values():
        assert (cache / VERSIONS_DIR / version / "model.json").is_file()
    assert not Path("s3:").exists()
    predicted = Lake(LAKE).read_partition("predictions", date=run.window_end, run_id=run.run_id)
    assert predicted.num_rows and set(predicted["model_version"].to_pylist()) == {version}


def test_a_retried_triage_run_on_s3_reuses_cached_stages_and_writes_every_change_once(s3_run):
    sim, run, trained = s3_run["sim"], s3_run["triaged"], s3_run["trained"]
    lake = Lake(LAKE)
    assert s3_run["attempts"] == 2
    stages = [(r["stage"], r["status"]) for r in run_history(lake, run.run_id)]
    assert stages.count(("extract", "ok")) == 1 and stages.count(("predict", "ok")) == 1  # Cached on retry
    assert ("run", "failed") in stages and ("run", "ok") in stages

    decided = lake.read_partition("decisions", date=run.window_end, run_id=run.run_id).to_pylist()
    applied = {(d["ticket_id"], NATIVE_KEYS[d["field"]]) for d in decided if d["action"] == "apply"}
    assert applied, "the model should be confident about some tickets"
    ours = Counter(
        (c.ticket_id, name)
        for c in sim.changes
        if c.source in ("api", "bulk")
        for name in c.changes
        if name != "tags"
    )
    assert ours == dict.fromkeys(applied, 1)  # each applied decision changed its field once, no more

    cached = [key.removeprefix("lake/_prefect_results/") for key in objects("lake/_prefect_results/")]
    for stage, run_id in (("extract", run.run_id), ("predict", run.run_id), ("train", trained.run_id)):
        assert any(name.startswith(f"{stage}-{run_id}-") for name in cached), (stage, cached)
    lease = objects("lake/_lease/")
    newest = json.loads(lease[max(lease)])
    assert (newest["run_id"], newest["released"]) == (run.run_id, True)


def test_the_api_key_is_in_no_object_on_s3(s3_run):
    key = s3_run["sim"].api_key.encode()
    stored = objects("")
    assert {name.split("/", 1)[0] for name in stored} >= {"lake", "models"}  # the model store's files too
    assert not [name for name, body in stored.items() if key in body]


def test_a_second_run_refuses_the_s3_lake_while_the_first_holds_its_lease(s3):
    lake = Lake(f"s3://{BUCKET}/lease-test")
    with (
        hold(lake, run_id="first", flow="triage", ttl=60, wait=0) as first,
        pytest.raises(LakeBusyError, match="in use by run first"),
    ):
        LakeLease.acquire(lake, run_id="second", flow="triage", ttl=60, wait=0)
    second = LakeLease.acquire(lake, run_id="second", flow="triage", ttl=60, wait=0)  # released: at once
    assert second.record.generation == first.record.generation + 1
    second.release()


def test_an_s3_uri_with_an_endpoint_or_keys_in_it_is_refused_for_the_lake_and_the_results(
    tmp_path, monkeypatch
):
    from triage.tasks.context import StageContext
    from triage.tasks.prefect_tasks import result_storage

    monkeypatch.setenv("FRESHDESK_API_KEY", "not-used")
    for uri in (
        f"s3://{BUCKET}/lake?endpoint_override=127.0.0.1:9000&scheme=http",  # results would miss it
        f"s3://AKIAEXAMPLE:hunter2@{BUCKET}/lake",  # would be logged and saved in a Prefect block
    ):
        config = write_config(
            tmp_path / "triage.yml", "http://127.0.0.1:9/api/v2", lake=tmp_path, store=tmp_path, results=uri
        )
        ctx = StageContext(
            run_id="r",
            flow="triage",
            window_start=datetime(2026, 1, 1, tzinfo=UTC),
            window_end=datetime(2026, 1, 2, tzinfo=UTC),
            window_source="explicit",
            config_path=str(config),
        )
        with pytest.raises(ValueError, match="AWS_ENDPOINT_URL") as by_lake:
            Lake(uri)
        with pytest.raises(ValueError, match="AWS_ENDPOINT_URL") as by_results:
            result_storage(ctx)
        for refused in (by_lake, by_results):
            assert f"s3://{BUCKET}/lake:" in str(refused.value)
            assert "hunter2" not in str(refused.value) and "9000" not in str(refused.value)


def test_analysts_read_the_s3_lake_with_pyarrow_and_duckdb_without_extensions(s3_run):
    run = s3_run["triaged"]
    fs, root = pafs.FileSystem.from_uri(LAKE)  # the endpoint from AWS_ENDPOINT_URL, as for the flows
    audit = ds.dataset(f"{root}/audit", filesystem=fs, format="parquet", partitioning="hive")
    ok = audit.to_table(filter=(pc.field("phase") == "result") & (pc.field("status") == "ok"))
    assert ok.num_rows > 0 and set(ok["run_id"].to_pylist()) == {run.run_id}

    con = duckdb.connect()
    con.execute("SET autoinstall_known_extensions = false; SET autoload_known_extensions = false")
    con.register("audit", audit)
    rows = con.sql(
        "SELECT field, count(*) FROM audit WHERE phase = 'result' AND status = 'ok' GROUP BY field"
    ).fetchall()
    assert sum(n for _, n in rows) == ok.num_rows
    loaded = con.sql("SELECT extension_name FROM duckdb_extensions() WHERE loaded").fetchall()
    assert ("httpfs",) not in loaded
