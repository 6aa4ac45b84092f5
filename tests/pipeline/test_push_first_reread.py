"""Push's first re-read starts where the extract started (less the clock slack), on Freshdesk's clock:
it sees every edit made after the tickets were read, and does not read again the tickets changed
shortly before (an hourly run's previous writes, agents' edits: the extract has them already)."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest
from test_stages import run_to_decide, written_fields

from triage.tasks.push import push

pytestmark = pytest.mark.asyncio


async def test_the_first_re_read_starts_at_the_extract_and_still_sees_an_edit_after_it(
    make_ctx, adapter_for, sim, monkeypatch
):
    target = min(t for t, labels in sim.truth().items() if labels["priority"] != "Low")
    before = [t for t in sorted(sim.truth()) if t != target][-30:]
    for ticket_id in before:  # changed a minute before the extract started, by Freshdesk's clock
        sim.agent_edit(ticket_id, status=3)
    sim.advance_clock(60)
    ctx = make_ctx()
    async with adapter_for(ctx) as adapter:
        extracted, _, decided = await run_to_decide(ctx, adapter, sim, confident=lambda t: True)
        reads: list[set[int]] = []
        read = adapter.iter_updated_tickets

        async def counted(since, until=None, **kwargs):
            reads.append(set())
            async for ticket in read(since, until, **kwargs):
                reads[-1].add(ticket.id)
                yield ticket

        monkeypatch.setattr(adapter, "iter_updated_tickets", counted)
        other_group = next(g for g in sim.labels()["group"] if g != sim.truth()[target]["group"])
        sim.agent_edit(target, group=other_group)
        pushed = await push(ctx, decided, extracted, adapter)
    assert target in reads[0]
    assert not reads[0] & set(before)
    assert "group_id" not in written_fields(sim).get(target, {})
    audit = ctx.lake().read_paths("audit", pushed.paths).filter(pc.field("ticket_id") == target)
    assert ("group", "agent_changed") in zip(
        audit.column("field").to_pylist(), audit.column("reason_code").to_pylist(), strict=True
    )
