"""Tags against the live simulator: decide and push add predicted tags, never remove one, and leave
a tag an agent removed after triage added it alone."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline_helpers import THRESHOLDS, api_changes

from triage.tasks.decide import decide
from triage.tasks.extract import extract
from triage.tasks.manifest import PredictManifest
from triage.tasks.push import push
from triage.tasks.snapshots import latest_snapshots

VERSION = "v-tags"
TAGS = {"urgent": (0.8, 0.5), "vpn": (0.7, 0.5)}


def tag_predictions(ctx, tickets, tags_of) -> PredictManifest:
    """A ``tags`` prediction row per eligible ticket: ``tags_of(ticket_id)`` -> {tag: probability}; the
    manifest carries the tags' thresholds, as predict's does from the model version's ``model.json``."""
    lake = ctx.lake()
    rows = []
    for ticket_id in latest_snapshots(lake.read_paths("tickets", tickets.paths), eligible_only=True):
        ranked = sorted(tags_of(ticket_id).items(), key=lambda kv: -kv[1])
        rows.append(
            {
                "run_id": ctx.run_id,
                "ticket_id": ticket_id,
                "field": "tags",
                "label": ranked[0][0],
                "probability": ranked[0][1],
                "top_k": [{"label": t, "probability": p} for t, p in ranked],
                "model_name": "fake",
                "model_version": VERSION,
                "text_hash": "0" * 64,
                "predicted_at": datetime.now(UTC),
            }
        )
    part = lake.write("predictions", rows, date=ctx.partition, run_id=ctx.run_id, name="predict-00001")
    return PredictManifest(
        run_id=ctx.run_id, paths=[part.path], rows=len(rows), model_name="fake", model_version=VERSION,
        thresholds=THRESHOLDS, tag_thresholds=TAGS,
    )  # fmt: skip


async def run_once(ctx, adapter, tags_of):
    extracted = await extract(ctx, adapter)
    predicted = tag_predictions(ctx, extracted, tags_of)
    decided = decide(ctx, extracted, predicted, await adapter.get_fields())
    return await push(ctx, decided, extracted, adapter)


async def test_push_adds_tags_without_removing_any_and_never_re_adds_one_an_agent_removed(
    make_ctx, adapter_for, sim
):
    tagged, removed, *rest = sorted(sim.truth())
    sim.agent_edit(tagged, tags=["vip", "Urgent"])

    def tags_of(ticket_id):
        return {"urgent": 0.95, "vpn": 0.9} if ticket_id in (tagged, removed) else {"vpn": 0.9, "urgent": 0.2}

    async with adapter_for(ctx := make_ctx("run-1")) as adapter:
        await run_once(ctx, adapter, tags_of)
    assert sim.ticket(tagged)["tags"] == ["vip", "Urgent", "ai-triaged", "vpn"]  # urgent not added twice
    assert sim.ticket(removed)["tags"] == ["ai-triaged", "urgent", "vpn"]
    assert all(sim.ticket(t)["tags"] == ["ai-triaged", "vpn"] for t in rest)  # in bulk: appended
    assert any(c.source == "bulk" for c in api_changes(sim))
    # no write of ours ever removed a tag (the simulator's own change log)
    for change in api_changes(sim):
        if "tags" in change.changes:
            old, new = change.changes["tags"]
            assert set(old) <= set(new), change

    sim.agent_edit(removed, tags=["ai-triaged", "urgent"])  # the agent drops our vpn
    writes_before = len(api_changes(sim))
    async with adapter_for(ctx := make_ctx("run-2")) as adapter:
        pushed = await run_once(ctx, adapter, tags_of)
    assert sim.ticket(removed)["tags"] == ["ai-triaged", "urgent"]
    assert len(api_changes(sim)) == writes_before  # nothing else was owed either
    audit = ctx.lake().read_paths("audit", pushed.paths).to_pylist()
    left = [(a["label"], a["status"], a["reason_code"]) for a in audit if a["ticket_id"] == removed]
    assert left == [("vpn", "skipped", "agent_changed")]
