"""Predict and decide read the model version's ``model.json`` once per run (a network read where the
store is on object storage): decide takes the tags' thresholds from predict's manifest, not the store."""

from __future__ import annotations

import pytest
from pipeline_helpers import extract_open, topic_training_frame

from triage.lake.tables.decisions import DECISIONS
from triage.models.manifest import ModelManifest
from triage.tasks.decide import decide
from triage.tasks.predict import predict


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store folder whose current version has a tags head: ``helpdesk`` on every ticket (applied
    everywhere), ``urgent`` on the urgent ones."""
    import torch

    from triage.models.store import ModelStore
    from triage.models.training import train
    from triage.models.training_config import TrainConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("store")
    frame = topic_training_frame(150)
    frame["tags"] = [["helpdesk", "urgent"] if p == "High" else ["helpdesk"] for p in frame["priority"]]
    config = TrainConfig(
        fields=["group"], tags=True, max_length=32, min_examples_per_class=10, store_root=root
    )
    version, _, _ = ModelStore(root).register(train(frame, config))
    tags = ModelManifest.read(version.path).tags
    assert tags is not None and tags.apply["helpdesk"].threshold is not None
    yield root
    torch.set_num_threads(threads)


async def test_a_run_reads_the_model_json_once_and_decides_tags_on_its_thresholds(
    make_ctx, adapter_for, store, monkeypatch
):
    reads: list[str] = []
    read = ModelManifest.read.__func__  # type: ignore[attr-defined]

    def counted(cls, folder):
        reads.append(str(folder))
        return read(cls, folder)

    monkeypatch.setattr(ModelManifest, "read", classmethod(counted))
    settings = {"model": {"store": str(store), "device": "cpu"}, "pipeline": {"mode": "suggest"}}
    for run in ("run-1", "run-2"):  # the first loads the model (once per process), the second reuses
        ctx = make_ctx(run).model_copy(update={"overrides": settings})
        extracted = await extract_open(ctx, adapter_for)
        reads.clear()  # from here on: this run's reads
        predicted = predict(ctx, extracted)
        async with adapter_for(ctx) as adapter:
            specs = await adapter.get_fields()
        decided = decide(ctx, extracted, predicted, specs)
        loaded = 1 if run == "run-1" else 0  # loading the weights reads the folder's model.json too
        assert len(reads) == 1 + loaded, reads
    assert predicted.counts["*"]["tickets_reused"] >= 10
    manifest = ModelManifest.read(store / "versions" / predicted.model_version)
    assert manifest.tags is not None
    rows = [
        r for r in ctx.lake().read_paths(DECISIONS.name, decided.paths).to_pylist() if r["field"] == "tags"
    ]
    helpdesk = [r for r in rows if r["predicted_label"] == "helpdesk"]
    assert len(helpdesk) == predicted.counts["tags"]["predicted"]  # on every ticket, at its own threshold
    for row in rows:
        tag = row["predicted_label"]
        assert (row["apply_threshold"], row["suggest_threshold"]) == (
            manifest.tags.apply[tag].threshold,
            manifest.tags.suggest[tag].threshold,
        )
