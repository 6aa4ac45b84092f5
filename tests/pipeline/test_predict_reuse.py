"""Predict reuses a prediction of the same model version for the same input instead of computing it again.

A tiny model is trained once for the module (the packaged MiniLM, short texts); the simulator's open
tickets go through extract and predict twice, with an agent's edit in between that changes one ticket's
text and another's priority only.
"""

from __future__ import annotations

import pytest
from pipeline_helpers import extract_open, topic_training_frame

from triage.lake.tables.predictions import PREDICTIONS
from triage.models.inference import InferenceEngine
from triage.tasks.predict import predict


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> InferenceEngine:
    import torch

    from triage.models.store import ModelStore
    from triage.models.training import train
    from triage.models.training_config import TrainConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("store")
    config = TrainConfig(max_length=32, min_examples_per_class=10, store_root=root)
    ModelStore(root).register(train(topic_training_frame(), config))
    yield InferenceEngine.load(root, device="cpu")
    torch.set_num_threads(threads)


def _rows(ctx, manifest) -> dict[tuple[int, str], dict]:
    rows = ctx.lake().read_paths(PREDICTIONS.name, manifest.paths).to_pylist()
    assert len(rows) == len({(r["ticket_id"], r["field"]) for r in rows})
    return {(r["ticket_id"], r["field"]): r for r in rows}


def _outputs(row: dict) -> tuple:
    return (row["label"], row["model_name"], row["model_version"], row["text_hash"], row["input_hash"])


def _same_outputs(reused: dict, fresh: dict) -> None:
    """Equal as the engine promises: batches of other tickets move a probability by at most 1e-5."""
    assert _outputs(reused) == _outputs(fresh)
    assert reused["probability"] == pytest.approx(fresh["probability"], abs=1e-5)
    assert [k["label"] for k in reused["top_k"]] == [k["label"] for k in fresh["top_k"]]
    assert [k["probability"] for k in reused["top_k"]] == pytest.approx(
        [k["probability"] for k in fresh["top_k"]], abs=1e-5
    )


async def test_unchanged_input_is_reused_equal_to_a_fresh_computation(make_ctx, adapter_for, sim, engine):
    first = make_ctx("run-1")
    predicted = predict(first, await extract_open(first, adapter_for), engine=engine)
    tickets = len({t for t, _ in _rows(first, predicted)})
    assert tickets >= 10
    assert predicted.counts["*"] == {"tickets_reused": 0, "tickets_computed": tickets}
    assert all(r["reused_from_run"] is None and r["input_hash"] for r in _rows(first, predicted).values())

    retyped, triaged = sorted(sim.truth())[:2]
    sim.agent_edit(retyped, subject="Completely different words about a broken printer")
    sim.agent_edit(triaged, priority="Urgent")  # same text: an edit that brings the ticket back

    second = make_ctx("run-2")
    extracted = await extract_open(second, adapter_for)
    again = predict(second, extracted, engine=engine)
    rows = _rows(second, again)
    assert again.counts["*"] == {"tickets_reused": tickets - 1, "tickets_computed": 1}
    assert again.counts["group"] == {"predicted": tickets, "reused": tickets - 1}
    assert {r["reused_from_run"] for (t, _), r in rows.items() if t != retyped} == {"run-1"}
    assert {r["reused_from_run"] for (t, _), r in rows.items() if t == retyped} == {None}
    assert {f for t, f in rows if t == triaged} == set(engine.fields)

    # A rerun of run-2's predict (a retry) writes the same rows again, no more; its own are no source.
    rerun = predict(second, extracted, engine=engine)
    assert rerun.counts == again.counts and rerun.rows == again.rows
    assert len(ctx_rows := _rows(second, rerun)) == len(rows)
    for key, row in rows.items():
        assert {**ctx_rows[key], "predicted_at": None} == {**row, "predicted_at": None}
    partition = second.lake().read_partition(PREDICTIONS.name, date=second.partition, run_id=second.run_id)
    assert partition.num_rows == len(rows)

    # The same tickets computed afresh (reuse off): the reused outputs are what the model gives.
    fresh_ctx = make_ctx("run-3").model_copy(update={"overrides": {"pipeline": {"reuse_days": 0}}})
    fresh = predict(fresh_ctx, extracted, engine=engine)
    assert fresh.counts["*"] == {"tickets_reused": 0, "tickets_computed": tickets}
    fresh_rows = _rows(fresh_ctx, fresh)
    assert fresh_rows.keys() == rows.keys()
    for key, row in rows.items():
        _same_outputs(row, fresh_rows[key])


async def test_another_model_version_or_setup_computes_again(make_ctx, adapter_for, engine):
    first = make_ctx("run-1")
    extracted = await extract_open(first, adapter_for)
    predict(first, extracted, engine=engine)

    newer = InferenceEngine(engine.model, engine.manifest.model_copy(update={"version": "v-newer"}))
    ctx = make_ctx("run-2")
    other = predict(ctx, extracted, engine=newer)
    assert other.counts["*"]["tickets_reused"] == 0
    assert {r["model_version"] for r in _rows(ctx, other).values()} == {"v-newer"}

    two = InferenceEngine(engine.model, engine.manifest, top_k=2)  # another setup: shorter top-k
    ctx = make_ctx("run-3")
    shorter = predict(ctx, extracted, engine=two)
    assert shorter.counts["*"]["tickets_reused"] == 0
    assert {len(r["top_k"]) for r in _rows(ctx, shorter).values()} == {2}

    # The next run of the newer version reuses run-2's computation, not run-1's.
    ctx = make_ctx("run-4")
    reused = predict(ctx, extracted, engine=newer)
    assert reused.counts["*"]["tickets_computed"] == 0
    assert {r["reused_from_run"] for r in _rows(ctx, reused).values()} == {"run-2"}


async def test_only_recent_computations_are_reused(make_ctx, adapter_for, engine, monkeypatch):
    first = make_ctx("run-1")
    extracted = await extract_open(first, adapter_for)
    predict(first, extracted, engine=engine)

    from datetime import timedelta

    import triage.tasks.predict as stage

    later = stage.utcnow() + timedelta(days=4)  # run-1's computation is older than reuse_days (3)
    monkeypatch.setattr(stage, "utcnow", lambda: later)
    ctx = make_ctx("run-2")
    assert predict(ctx, extracted, engine=engine).counts["*"]["tickets_reused"] == 0
