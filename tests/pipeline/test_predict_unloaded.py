"""Predict loads no model when every prediction is reused (issue 13 item 3): the hashes and the reuse
look-up need the store's current version and its manifest only, not its weights."""

from __future__ import annotations

import pytest
from pipeline_helpers import extract_open, topic_training_frame

from triage.models import inference, loading
from triage.tasks.predict import predict


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    import torch

    from triage.models.store import ModelStore
    from triage.models.training import train
    from triage.models.training_config import TrainConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("store")
    ModelStore(root).register(
        train(topic_training_frame(), TrainConfig(max_length=32, min_examples_per_class=10, store_root=root))
    )
    yield root
    torch.set_num_threads(threads)


async def test_every_prediction_reused_loads_no_model(make_ctx, adapter_for, store, monkeypatch):
    cpu = {"model": {"store": str(store), "device": "cpu"}}
    first = make_ctx("run-1").model_copy(update={"overrides": cpu})
    extracted = await extract_open(first, adapter_for)
    computed = predict(first, extracted)
    tickets = computed.counts["*"]["tickets_computed"]
    assert tickets >= 10

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded although every prediction is reused")

    monkeypatch.setattr(inference, "load_cached", refuse)
    monkeypatch.setattr(loading, "load_cached", refuse)
    second = make_ctx("run-2").model_copy(update={"overrides": cpu})
    reused = predict(second, extracted)
    assert reused.counts["*"] == {"tickets_reused": tickets, "tickets_computed": 0}
    assert reused.model_dump(exclude={"run_id", "paths"}) == computed.model_dump(
        exclude={"run_id", "paths"}
    ) | {"counts": reused.counts}
