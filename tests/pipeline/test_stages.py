"""The stages as plain Python against a live simulator: extract, decide and push (no Prefect, no model)."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest
from pipeline_helpers import api_changes, fake_predictions, truth_predictions, write_config

from triage.adapters.errors import MalformedTicketError
from triage.lake.runs import run_history
from triage.tasks.decide import decide
from triage.tasks.extract import extract
from triage.tasks.push import push

pytestmark = pytest.mark.asyncio


async def run_to_decide(
    ctx, adapter, sim, confident=lambda t: t % 2 == 0, fields=("group", "priority", "type")
):
    extracted = await extract(ctx, adapter)
    predicted = fake_predictions(ctx, extracted, truth_predictions(sim, confident), fields=fields)
    decided = decide(ctx, extracted, predicted, await adapter.get_fields())
    return extracted, predicted, decided


def written_fields(sim) -> dict[int, dict[str, object]]:
    """ticket id -> {field: new value} over every API/bulk change, failing on any repeated field."""
    out: dict[int, dict[str, object]] = {}
    for change in api_changes(sim):
        for name, (_, new) in change.changes.items():
            if name == "tags":
                continue
            assert name not in out.get(change.ticket_id, {}), (
                f"ticket {change.ticket_id} {name} written twice"
            )
            out.setdefault(change.ticket_id, {})[name] = new
    return out


async def test_extract_keeps_open_tickets_and_marks_the_rest(make_ctx, adapter_for, sim):
    ctx = make_ctx(days=400)
    async with adapter_for(ctx) as adapter:
        manifest = await extract(ctx, adapter)
    tickets = ctx.lake().read_paths("tickets", manifest.paths).to_pylist()
    by_reason = {}
    for row in tickets:
        by_reason.setdefault(row["skip_reason"], set()).add(row["ticket_id"])
    assert set(sim.truth()) <= by_reason[None]  # every open ticket is eligible
    assert all(sim.ticket(t)["status"] in (4, 5) for t in by_reason["resolved"])
    assert manifest.eligible == len(by_reason[None]) and manifest.rows == len(tickets)
    assert {r["ticket_id"] for r in tickets}.isdisjoint(
        {t for t in sim.ticket_ids() if sim.ticket(t)["spam"] or sim.ticket(t).get("deleted")}
    )
    assert [r["stage"] for r in run_history(ctx.lake(), ctx.run_id)] == ["extract"]


async def test_malformed_tickets_are_quarantined_with_their_raw_json(make_ctx, adapter_for, sim):
    ctx = make_ctx()

    async with adapter_for(ctx) as adapter:
        real = adapter.iter_updated_tickets

        async def with_a_bad_row(since, until=None, *, on_malformed=None):
            on_malformed(
                MalformedTicketError(
                    "created_at: not a date", ticket_id=999, raw={"id": 999, "created_at": "x"}
                )
            )
            async for ticket in real(since, until, on_malformed=on_malformed):
                yield ticket

        adapter.iter_updated_tickets = with_a_bad_row
        manifest = await extract(ctx, adapter)
    rows = ctx.lake().read_paths("quarantine", manifest.quarantine_paths).to_pylist()
    assert [(r["ticket_id"], r["raw_json"]) for r in rows] == [(999, '{"created_at": "x", "id": 999}')]
    assert "not a date" in rows[0]["error"] and manifest.quarantined == 1


async def test_apply_writes_only_confident_known_values_then_a_rerun_writes_nothing(
    make_ctx, adapter_for, sim
):
    ctx = make_ctx()
    truth = sim.truth()
    async with adapter_for(ctx) as adapter:
        extracted, _, decided = await run_to_decide(ctx, adapter, sim)
        pushed = await push(ctx, decided, extracted, adapter)
    decisions = ctx.lake().read_paths("decisions", decided.paths).to_pylist()
    assert {d["ticket_id"] for d in decisions} == {t for t in truth}  # every eligible ticket decided
    applied = {(d["ticket_id"], d["field"]): d["label"] for d in decisions if d["action"] == "apply"}
    assert applied and all(t % 2 == 0 for t, _ in applied)  # only confident predictions

    written = written_fields(sim)
    specs = {"group": "group_id", "priority": "priority", "type": "type"}
    assert {(t, f) for t, fields in written.items() for f in fields if f in specs.values()} == {
        (t, specs[f]) for t, f in applied
    }
    for (t, field), label in applied.items():
        assert sim.ticket(t)["tags"].count("ai-triaged") == 1
        if field == "type":
            assert sim.ticket(t)["type"] == label

    audit = ctx.lake().read_paths("audit", pushed.paths).to_pylist()
    results = [a for a in audit if a["phase"] == "result"]
    assert {(a["ticket_id"], a["field"]) for a in results if a["status"] == "ok"} == set(applied)
    assert all(a["http_status"] in (200, 202) and a["request_id"] for a in results if a["status"] == "ok")

    # A second run over the same window (tickets now carry our writes) sends nothing at all.
    before = len(sim.writes)
    again = make_ctx("run-2")
    async with adapter_for(again) as adapter:
        extracted2, _, decided2 = await run_to_decide(again, adapter, sim)
        await push(again, decided2, extracted2, adapter)
    assert len(sim.writes) == before
    skipped = (
        ctx.lake().read_paths("tickets", extracted2.paths).filter(pc.field("skip_reason") == "own_write")
    )
    assert set(skipped.column("ticket_id").to_pylist()) == {t for t, _ in applied}


async def test_shadow_mode_sends_no_write(make_ctx, adapter_for, sim):
    ctx = make_ctx(mode="shadow")
    async with adapter_for(ctx) as adapter:
        extracted, _, decided = await run_to_decide(ctx, adapter, sim, confident=lambda t: True)
        pushed = await push(ctx, decided, extracted, adapter)
    decisions = ctx.lake().read_paths("decisions", decided.paths)
    assert "apply" in decisions.column("action").to_pylist()  # what would have been written
    assert set(decisions.column("mode").to_pylist()) == {"shadow"}
    assert sim.writes == [] and pushed.sent == 0


async def test_an_agents_edit_between_extract_and_push_is_not_overwritten(make_ctx, adapter_for, sim):
    ctx = make_ctx()
    async with adapter_for(ctx) as adapter:
        extracted, _, decided = await run_to_decide(ctx, adapter, sim, confident=lambda t: True)
        target = min(t for t, labels in sim.truth().items() if labels["priority"] != "Low")
        other_group = next(g for g in sim.labels()["group"] if g != sim.truth()[target]["group"])
        sim.agent_edit(target, group=other_group)
        pushed = await push(ctx, decided, extracted, adapter)
    assert sim.ticket(target)["group_id"] is not None
    assert "group_id" not in written_fields(sim).get(target, {})
    audit = ctx.lake().read_paths("audit", pushed.paths).filter(pc.field("ticket_id") == target).to_pylist()
    group_rows = [a for a in audit if a["field"] == "group"]
    assert [(a["status"], a["reason_code"]) for a in group_rows] == [("skipped", "agent_changed")]
    # the agent's group meets priority's requirement, but the ticket changed since the snapshot, so its
    # Low may be the agent's choice too (changed away and back looks the same): left alone as well
    priority_rows = [(a["status"], a["reason_code"]) for a in audit if a["field"] == "priority"]
    assert priority_rows == [("skipped", "agent_changed")]
    assert sim.ticket(target)["priority"] == 1


async def test_a_low_priority_an_agent_chose_is_never_overwritten(make_ctx, adapter_for, sim):
    """The agent lowers a ticket to Low; an untouched ticket's Low is still Freshdesk's default."""
    chosen, untouched = sorted(sim.truth())[:2]
    sim.agent_edit(chosen, priority="Medium")
    sim.agent_edit(chosen, priority="Low")
    ctx = make_ctx()

    def high(ticket_id, field):
        return ("High", 0.95) if field == "priority" else (sim.truth()[ticket_id][field], 0.95)

    async with adapter_for(ctx) as adapter:
        extracted = await extract(ctx, adapter)
        predicted = fake_predictions(ctx, extracted, high)
        decided = decide(ctx, extracted, predicted, await adapter.get_fields())
        await push(ctx, decided, extracted, adapter)
    assert sim.ticket(chosen)["priority"] == 1
    assert "priority" not in written_fields(sim).get(chosen, {})  # from the simulator's change log
    assert written_fields(sim)[untouched]["priority"] == 3


@pytest.mark.parametrize("bulk", [False, True])
async def test_an_agents_edit_while_push_is_writing_is_not_overwritten(
    make_ctx, adapter_for, sim, config, monkeypatch, bulk
):
    """A long push (minutes at Freshdesk's limits) re-reads before each batch it sends."""
    import triage.tasks.push_send as push_send

    monkeypatch.setattr(push_send, "SINGLE_BATCH", 1)
    write_config(config, sim, config.parent, bulk_update=bulk, push_reread_seconds=0)
    ctx = make_ctx()
    fields = ("group",) if bulk else ("group", "priority", "type")
    acted: dict[str, object] = {}
    async with adapter_for(ctx) as adapter:
        extracted, _, decided = await run_to_decide(
            ctx, adapter, sim, confident=lambda t: True, fields=fields
        )
        decisions = ctx.lake().read_paths("decisions", decided.paths).to_pylist()
        to_write = {d["ticket_id"] for d in decisions if d["action"] == "apply"}
        real_update, real_bulk = adapter.update_ticket, adapter.bulk_update

        def agent_acts_once(written: set[int]) -> None:
            """After push's first request, an agent edits a ticket push has not reached yet."""
            if acted:
                return
            target = max(to_write - written)
            group = next(g for g in sim.labels()["group"] if g != sim.truth()[target]["group"])
            sim.agent_edit(target, group=group, tags=["customer-vip"])
            acted.update(target=target, group=group)

        async def update_then_agent(ticket_id, data, **kwargs):
            result = await real_update(ticket_id, data, **kwargs)
            agent_acts_once({ticket_id})
            return result

        async def bulk_then_agent(ticket_ids, data):
            result = await real_bulk(ticket_ids, data)
            agent_acts_once(set(ticket_ids))
            return result

        adapter.update_ticket, adapter.bulk_update = update_then_agent, bulk_then_agent
        pushed = await push(ctx, decided, extracted, adapter)
    target = acted["target"]
    ticket = sim.ticket(target)
    assert sim.store.account.groups[ticket["group_id"]] == acted["group"]
    assert "customer-vip" in ticket["tags"]
    audit = ctx.lake().read_paths("audit", pushed.paths).filter(pc.field("ticket_id") == target).to_pylist()
    assert ("group", "skipped", "agent_changed") in {
        (a["field"], a["status"], a["reason_code"]) for a in audit
    }
    assert "group_id" not in written_fields(sim).get(target, {})


async def test_identical_changes_go_out_as_bulk_updates(make_ctx, adapter_for, sim, config):
    ctx = make_ctx()
    truth = sim.truth()
    group = truth[min(truth)]["group"]
    same = {t for t, labels in truth.items() if labels["group"] == group}

    def choose(ticket_id, field):
        return (group, 0.95) if field == "group" and ticket_id in same else None

    async with adapter_for(ctx) as adapter:
        extracted = await extract(ctx, adapter)
        predicted = fake_predictions(ctx, extracted, choose, fields=("group",))
        decided = decide(ctx, extracted, predicted, await adapter.get_fields())
        pushed = await push(ctx, decided, extracted, adapter)
    assert len(same) >= 2
    bulk = [w for w in sim.writes if w.path.endswith("/tickets/bulk_update")]
    assert len(bulk) == 1 and sorted(bulk[0].body["bulk_action"]["ids"]) == sorted(same)
    assert not [w for w in sim.writes if w.method == "PUT"]
    assert {t for t, f in written_fields(sim).items() if "group_id" in f} == same
    methods = set(ctx.lake().read_paths("audit", pushed.paths).column("method").to_pylist())
    assert methods == {"bulk_update"}


async def test_suggest_mode_adds_one_private_note_per_ticket_and_never_repeats_it(make_ctx, adapter_for, sim):
    ctx = make_ctx(mode="suggest")
    async with adapter_for(ctx) as adapter:
        extracted, _, decided = await run_to_decide(ctx, adapter, sim, confident=lambda t: t % 3 == 0)
        await push(ctx, decided, extracted, adapter)
        notes = [w for w in sim.writes if w.path.endswith("/notes")]
        assert notes and all(w.body["private"] is True for w in notes)
        assert not [w for w in sim.writes if w.method == "PUT"]
        target = int(notes[0].path.split("/")[-2])
        for label in (sim.truth()[target]["group"], "95% confident"):
            assert label.replace("&", "&amp;") in notes[0].body["body"]
        await push(ctx, decided, extracted, adapter)  # rerun of the same push
    assert len([w for w in sim.writes if w.path.endswith("/notes")]) == len(notes)


class Crash(BaseException):
    """The process dying: nothing after it runs (not even ``finally`` blocks that write files)."""


@pytest.mark.parametrize("bulk", [False, True])
async def test_a_crash_in_the_middle_of_push_then_a_rerun_writes_everything_exactly_once(
    make_ctx, adapter_for, sim, config, monkeypatch, bulk
):
    import triage.tasks.push_state as push_state

    write_config(config, sim, config.parent, bulk_update=bulk)
    ctx = make_ctx()
    crashed = False
    real_write_audit = push_state.write_audit

    def dead_disk(lake, rows, **kwargs):
        if crashed:
            raise Crash()
        return real_write_audit(lake, rows, **kwargs)

    monkeypatch.setattr(push_state, "write_audit", dead_disk)
    async with adapter_for(ctx) as adapter:
        # group only: many tickets share a change, so bulk updates carry them
        fields = ("group",) if bulk else ("group", "priority", "type")
        extracted, _, decided = await run_to_decide(
            ctx, adapter, sim, confident=lambda t: True, fields=fields
        )
        real_update, real_bulk, calls = adapter.update_ticket, adapter.bulk_update, []

        async def update_then_crash(*args, **kwargs):
            nonlocal crashed
            result = await real_update(*args, **kwargs)  # the write reaches the ticket system ...
            calls.append(args[0])
            if len(calls) == 3:
                crashed = True  # ... and the process dies before recording the result
                raise Crash()
            return result

        async def bulk_then_crash(*args, **kwargs):
            nonlocal crashed
            await real_bulk(*args, **kwargs)
            crashed = True
            raise Crash()

        adapter.update_ticket, adapter.bulk_update = update_then_crash, bulk_then_crash
        with pytest.raises(Crash):
            await push(ctx, decided, extracted, adapter)
    assert api_changes(sim)  # some writes happened before the crash
    assert any(c.source == "bulk" for c in api_changes(sim)) == bulk

    crashed = False
    async with adapter_for(ctx) as adapter:
        pushed = await push(ctx, decided, extracted, adapter)
    assert pushed.recovered > 0
    decisions = ctx.lake().read_paths("decisions", decided.paths).to_pylist()
    applied = {(d["ticket_id"], d["field"]) for d in decisions if d["action"] == "apply"}
    written = written_fields(sim)  # fails if any field was written twice
    native = {"group": "group_id", "priority": "priority", "type": "type"}
    assert {(t, f) for t, f in applied} == {
        (t, name) for t, changed in written.items() for name, key in native.items() if key in changed
    }
    audit = ctx.lake().scan("audit").to_pylist()
    intents = {(a["write_id"], a["ticket_id"], a["field"]) for a in audit if a["phase"] == "intent"}
    results = {(a["write_id"], a["ticket_id"], a["field"]) for a in audit if a["phase"] == "result"}
    assert intents <= results  # every intent resolved
    ok = [(a["ticket_id"], a["field"]) for a in audit if a["phase"] == "result" and a["status"] == "ok"]
    assert sorted(ok) == sorted(applied)  # one ok result per intended write
    assert any(a["reason_code"] == "confirmed_on_reread" for a in audit)


async def test_transient_failures_stop_push_and_a_retry_finishes_without_duplicates(
    make_ctx, adapter_for, sim, config
):
    from triage.adapters.errors import TransientError
    from triage.simulator import FaultRule

    write_config(config, sim, config.parent, bulk_update=False)
    ctx = make_ctx()
    async with adapter_for(ctx) as adapter:
        extracted, _, decided = await run_to_decide(ctx, adapter, sim, confident=lambda t: True)
        real_update, calls = adapter.update_ticket, []

        async def outage_after_three(*args, **kwargs):
            calls.append(args[0])
            if len(calls) == 4:  # Freshdesk starts answering 503 for longer than the adapter retries
                sim.faults.add(FaultRule(kind="error", status=503, next=50, method="PUT"))
            return await real_update(*args, **kwargs)

        adapter.update_ticket = outage_after_three
        with pytest.raises(TransientError):
            await push(ctx, decided, extracted, adapter)
    assert len(written_fields(sim)) == 3
    sim.faults.clear()
    async with adapter_for(ctx) as adapter:
        await push(ctx, decided, extracted, adapter)
    decisions = ctx.lake().read_paths("decisions", decided.paths).to_pylist()
    applied = {d["ticket_id"] for d in decisions if d["action"] == "apply"}
    assert set(written_fields(sim)) == applied  # fails on any field written twice
    pushes = [r for r in run_history(ctx.lake(), ctx.run_id) if r["stage"] == "push"]
    assert [r["status"] for r in pushes] == ["failed", "ok"] and "TransientError" in pushes[0]["message"]


async def test_a_rejected_write_is_audited_with_status_request_id_and_field(tmp_path, monkeypatch, make_ctx):
    from triage.adapters.registry import build_adapter
    from triage.simulator import SimulatorConfig, run_simulator

    strict = SimulatorConfig(tickets=120, open_tickets=8, seed=5, required_for_agents=("cf_order_number",))
    with run_simulator(strict) as other:
        monkeypatch.setenv("FRESHDESK_API_KEY", other.api_key)
        path = write_config(tmp_path / "strict.yml", other, tmp_path, bulk_update=False)
        ctx = make_ctx().model_copy(update={"config_path": str(path)})
        async with build_adapter(ctx.settings().ticket_system) as adapter:
            extracted, _, decided = await run_to_decide(ctx, adapter, other, confident=lambda t: True)
            pushed = await push(ctx, decided, extracted, adapter)
        failed = [
            a for a in ctx.lake().read_paths("audit", pushed.paths).to_pylist() if a["status"] == "failed"
        ]
        assert failed and not [c for c in other.changes if c.source == "api"]
        assert all(
            a["http_status"] == 400 and a["request_id"] and "cf_order_number" in a["error"] for a in failed
        )
        assert {a["reason_code"] for a in failed} == {"ValidationError"}


@pytest.mark.parametrize(("settle", "expected"), [(300, "unresolved_write"), (0, "sent")])
async def test_a_cut_off_bulk_write_waits_while_its_job_may_still_run(
    make_ctx, adapter_for, sim, config, settle, expected
):
    from triage.lake.runs import utcnow
    from triage.lake.tables.audit import AuditRow
    from triage.tasks.audit import write_audit

    write_config(config, sim, config.parent, bulk_settle_seconds=settle)
    ctx = make_ctx()
    async with adapter_for(ctx) as adapter:
        extracted, _, decided = await run_to_decide(
            ctx, adapter, sim, confident=lambda t: True, fields=("group",)
        )
        target = min(sim.truth())
        label = sim.truth()[target]["group"]
        intent = AuditRow(
            run_id="crashed-run",
            decision_run_id=ctx.run_id,
            write_id="w-1",
            phase="intent",
            ticket_id=target,
            field="group",
            label=label,
            method="bulk_update",
            status="pending",
            sent_at=utcnow(),
        )
        write_audit(ctx.lake(), [intent], run_id="crashed-run", partition=ctx.partition)
        pushed = await push(ctx, decided, extracted, adapter)
    rows = ctx.lake().read_paths("audit", pushed.paths).filter(pc.field("ticket_id") == target).to_pylist()
    if expected == "unresolved_write":
        assert [(r["status"], r["reason_code"]) for r in rows] == [("skipped", "unresolved_write")]
        assert target not in written_fields(sim)
    else:
        statuses = [(r["phase"], r["status"], r["reason_code"]) for r in rows]
        assert ("result", "not_applied", "not_found_on_reread") in statuses and (
            "result",
            "ok",
            None,
        ) in statuses
        assert written_fields(sim)[target]["group_id"] is not None
