"""Ticket text that is not valid Unicode (a lone UTF-16 surrogate) must not block the pipeline."""

from __future__ import annotations

import json

from triage.simulator import responses
from triage.tasks.extract import extract

BROKEN_SUBJECT = "Printer \ud83d down"
BROKEN_DESCRIPTION = "It says \udc00 and stops"


def serve_escaped_json(monkeypatch) -> None:
    """Answer JSON with \\uXXXX escapes (as Rails does), so a lone surrogate reaches the client."""
    monkeypatch.setattr(responses, "dumps", lambda obj: json.dumps(obj, separators=(",", ":")).encode())


async def test_a_lone_surrogate_is_replaced_and_counted_and_the_run_goes_on(
    make_ctx, adapter_for, sim, monkeypatch
):
    serve_escaped_json(monkeypatch)
    broken = sorted(sim.truth())[0]
    sim.agent_edit(broken, subject=BROKEN_SUBJECT, tags=["vip", "bad\udfff"])
    sim.store.tickets[broken].description_text = BROKEN_DESCRIPTION
    ctx = make_ctx()
    async with adapter_for(ctx) as adapter:
        manifest = await extract(ctx, adapter)
    rows = {r["ticket_id"]: r for r in ctx.lake().read_paths("tickets", manifest.paths).to_pylist()}
    assert set(sim.truth()) <= set(rows)  # every open ticket read, the broken one too
    row = rows[broken]
    assert row["subject"] == "Printer \ufffd down" and "It says \ufffd and stops" in row["description"]
    assert row["tags"] == ["vip", "bad\ufffd"] and row["skip_reason"] is None
    assert manifest.counts["*"]["text_repaired"] == 1
