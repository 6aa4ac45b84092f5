"""Tickets spammed or deleted between extract and push, and faults (malformed JSON, drops, 5xx) on the read
paths, judged from the simulator's own logs: writes lost 0, doubled 0, agent values overwritten 0."""

from __future__ import annotations

import pytest
from pipeline_helpers import fake_predictions, truth_predictions, wanted_writes, write_config

import triage.tasks.push_send
from triage.adapters.errors import TicketSystemError, is_transient
from triage.lake.runs import run_history
from triage.simulator import FaultRule
from triage.simulator.verdict import judge
from triage.tasks.decide import decide
from triage.tasks.extract import extract
from triage.tasks.push import push

pytestmark = pytest.mark.asyncio

CLEAN = {"lost": [], "doubled": [], "overwritten": []}


async def decided_run(ctx, adapter, sim, fields=("group", "priority", "type")):
    """Extract, every true label predicted at 0.95, decide; returns the manifests and the writes wanted."""
    extracted = await extract(ctx, adapter)
    predicted = fake_predictions(ctx, extracted, truth_predictions(sim, lambda t: True), fields=fields)
    specs = await adapter.get_fields()
    decided = decide(ctx, extracted, predicted, specs)
    return extracted, decided, wanted_writes(ctx, decided, specs)


def touched(sim, ticket_id: int) -> list:
    """Every change our writes made to a ticket, and every note added to it."""
    changes = [c for c in sim.changes if c.ticket_id == ticket_id and c.source in ("api", "bulk")]
    return changes + list(sim.store.notes.get(ticket_id, []))


def results_for(ctx, ticket_id: int) -> set[tuple[str, str]]:
    rows = ctx.lake().scan("audit").to_pylist()
    return {
        (r["status"], r["reason_code"])
        for r in rows
        if r["phase"] == "result" and r["ticket_id"] == ticket_id
    }


@pytest.mark.parametrize("path", ["single", "bulk", "note"])
@pytest.mark.parametrize(("how", "when"), [("spam", "before push"), ("deleted", "during push")])
async def test_a_ticket_spammed_or_deleted_after_extract_gets_no_write_and_the_rest_go_out_once(
    make_ctx, adapter_for, sim, config, monkeypatch, how, path, when
):
    monkeypatch.setattr(triage.tasks.push_send, "SINGLE_BATCH", 1)
    write_config(config, sim, config.parent, bulk_update=path == "bulk", push_reread_seconds=0)
    ctx = make_ctx(mode="suggest" if path == "note" else None)
    fields = ("group",) if path == "bulk" else ("group", "priority", "type")
    async with adapter_for(ctx) as adapter:
        extracted, decided, wanted = await decided_run(ctx, adapter, sim, fields)
        gone: list[int] = []
        if when == "before push":
            gone.append(max(t for t, _ in wanted))
            sim.agent_edit(gone[0], **{how: True})
        else:  # once the first request went out, a ticket it did not carry goes
            real = {name: getattr(adapter, name) for name in ("update_ticket", "bulk_update", "add_note")}

            def then_one_goes(name):
                async def write(ids, *args, **kwargs):
                    result = await real[name](ids, *args, **kwargs)
                    if not gone:
                        carried = {ids} if isinstance(ids, int) else set(ids)
                        gone.append(max({t for t, _ in wanted} - carried))
                        sim.agent_edit(gone[0], **{how: True})
                    return result

                return write

            for name in real:
                setattr(adapter, name, then_one_goes(name))
        await push(ctx, decided, extracted, adapter)
        await push(ctx, decided, extracted, adapter)  # a rerun of the same push
    (gone,) = gone
    assert sim.ticket(gone).get(how) and touched(sim, gone) == []
    assert results_for(ctx, gone) <= {("skipped", "gone"), ("failed", "GoneError"), ("failed", "bulk_failed")}
    rest = {k: v for k, v in wanted.items() if k[0] != gone}
    if path == "note":
        assert {len(sim.store.notes.get(t, [])) for t, _ in rest} == {1}
    else:
        assert rest and judge(sim, rest) == CLEAN


GET = {"method": "GET"}
#: Faults on push's list re-read (planning, and before bulk requests) and on the re-read of the one ticket an
#: agent edits (right before its own update); the adapter retries 3 times, so an outage outlasts them.
READ_FAULTS = {
    "list-malformed": lambda target: FaultRule("malformed", next=1, path="/tickets", **GET),
    "list-dropped": lambda target: FaultRule("drop", next=1, path="/tickets", **GET),
    "list-502-outage": lambda target: FaultRule("error", status=502, next=12, path="/tickets", **GET),
    "ticket-malformed": lambda target: FaultRule("malformed", next=2, path=f"/tickets/{target}", **GET),
    "ticket-dropped": lambda target: FaultRule("drop", next=2, path=f"/tickets/{target}", **GET),
    "ticket-503-outage": lambda target: FaultRule(
        "error", status=503, next=12, path=f"/tickets/{target}", **GET
    ),
}


@pytest.mark.parametrize("case", list(READ_FAULTS))
async def test_faults_on_the_re_reads_before_writing_never_let_a_write_go_out_blind(
    make_ctx, adapter_for, sim, config, case
):
    """Push's re-reads fail while an agent edits a ticket after push planned it; push retried as its task
    would be. A write whose re-read failed is never sent on the planned values."""
    write_config(config, sim, config.parent, bulk_update=False)
    ctx = make_ctx()
    async with adapter_for(ctx) as adapter:
        extracted, decided, wanted = await decided_run(ctx, adapter, sim)
    target = max(t for t, _ in wanted)
    group = next(g for g in sim.labels()["group"] if g != sim.truth()[target]["group"])
    sim.faults.add(READ_FAULTS[case](target))

    def agent_once_planned(adapter):
        real = adapter.get_ticket

        async def get_ticket(ticket_id, *args, **kwargs):
            if "customer-vip" not in sim.ticket(target)["tags"]:
                sim.agent_edit(target, group=group, tags=["customer-vip"])
            return await real(ticket_id, *args, **kwargs)

        adapter.get_ticket = get_ticket
        return adapter

    for attempt in range(3):
        try:
            async with adapter_for(ctx) as adapter:
                await push(ctx, decided, extracted, agent_once_planned(adapter))
            break
        except TicketSystemError as exc:
            assert is_transient(exc) and attempt < 2
    wanted.pop((target, "priority"), None)  # changed since the snapshot: its Low may be the agent's choice
    assert judge(sim, wanted) == CLEAN
    assert sim.store.account.groups[sim.ticket(target)["group_id"]] == group
    assert "customer-vip" in sim.ticket(target)["tags"]


@pytest.mark.parametrize("times", [1, 40])
async def test_malformed_list_pages_during_extract_lose_no_ticket(make_ctx, adapter_for, sim, times):
    """One broken page is read again; pages that stay broken fail the stage with its error recorded."""
    sim.faults.add(FaultRule("malformed", next=times, path="/tickets", **GET))
    ctx = make_ctx()
    async with adapter_for(ctx) as adapter:
        if times > 1:
            with pytest.raises(TicketSystemError) as failed:
                await extract(ctx, adapter)
            assert is_transient(failed.value)
            (row,) = run_history(ctx.lake(), ctx.run_id)
            assert row["status"] == "failed" and "Traceback" not in row["message"]
            sim.faults.clear()
        extracted, decided, wanted = await decided_run(ctx, adapter, sim)
        await push(ctx, decided, extracted, adapter)
    assert set(sim.truth()) == {t for t, _ in wanted}  # every open ticket read and decided
    assert judge(sim, wanted) == CLEAN
