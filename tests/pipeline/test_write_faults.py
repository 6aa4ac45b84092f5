"""Push under agents and faults on every write path, judged by the simulator's own change and write logs:
writes lost 0, doubled 0, agent values overwritten 0."""

from __future__ import annotations

import contextlib
import dataclasses
import time

import pytest
from pipeline_helpers import fake_predictions, truth_predictions, wanted_writes, write_config

from triage.adapters.errors import TicketSystemError, TransientError, is_transient
from triage.simulator import FaultRule
from triage.simulator.verdict import judge
from triage.tasks.decide import decide
from triage.tasks.extract import extract
from triage.tasks.push import push

pytestmark = pytest.mark.asyncio

CLEAN = {"lost": [], "doubled": [], "overwritten": []}


class Crash(BaseException):
    """The process dying: nothing after it runs."""


async def decided_run(ctx, adapter, sim, fields=None):
    """Extract, predict every true label confidently, decide; returns the manifests and the writes wanted."""
    extracted = await extract(ctx, adapter)
    fields = fields or ("group", "priority", "type")
    predicted = fake_predictions(ctx, extracted, truth_predictions(sim, lambda t: True), fields=fields)
    specs = await adapter.get_fields()
    decided = decide(ctx, extracted, predicted, specs)
    return extracted, decided, wanted_writes(ctx, decided, specs)


async def later_run(make_ctx, adapter_for):
    """A later run whose window holds none of the earlier tickets: it decides nothing new."""
    ctx = make_ctx("run-later", days=0.00005)
    async with adapter_for(ctx) as adapter:
        extracted = await extract(ctx, adapter)
        predicted = fake_predictions(ctx, extracted, lambda t, f: None)
        decided = decide(ctx, extracted, predicted, await adapter.get_fields())
        return await push(ctx, decided, extracted, adapter)


def results(ctx) -> list[dict]:
    return [a for a in ctx.lake().scan("audit").to_pylist() if a["phase"] == "result"]


def timed(adapter, events: list[tuple[str, str, float, float]]) -> None:
    """Record (method, path, start, end) of every request the adapter sends."""
    real = adapter.client.request

    async def request(method, path, **kwargs):
        start = time.monotonic()
        try:
            return await real(method, path, **kwargs)
        finally:
            events.append((method, path, start, time.monotonic()))

    adapter.client.request = request


def residual_windows(events: list[tuple[str, str, float, float]]) -> list[float]:
    """Seconds between the end of the last read covering a write's tickets and the write's start."""
    windows = []
    for method, path, start, _ in events:
        if method == "PUT" or path == "/tickets/bulk_update":
            covering = ("/tickets",) if method == "POST" else ("/tickets", path)
            reads = [end for m, p, _, end in events if m == "GET" and p in covering and end <= start]
            windows.append(start - max(reads))
    return windows


@pytest.mark.parametrize("bulk", [False, True])
async def test_each_write_re_reads_its_tickets_right_before_it_is_sent(
    make_ctx, adapter_for, sim, config, bulk, capsys
):
    """An agent edits a ticket (group and a new tag) while push is writing others in the same batch."""
    write_config(config, sim, config.parent, bulk_update=bulk)  # push_reread_seconds keeps its 30 s
    ctx = make_ctx()
    fields = ("group",) if bulk else ("group", "priority", "type")
    acted: dict[str, int] = {}
    events: list[tuple[str, str, float, float]] = []
    async with adapter_for(ctx) as adapter:
        extracted, decided, wanted = await decided_run(ctx, adapter, sim, fields)
        shared = {}
        for (ticket_id, _), value in wanted.items():
            shared.setdefault(value, set()).add(ticket_id)
        timed(adapter, events)
        real_request = adapter.client.request

        async def agent_after_first_write(method, path, **kwargs):
            response = await real_request(method, path, **kwargs)
            if method in ("PUT", "POST") and not acted:
                written = {int(p.split("/")[-1]) for m, p, *_ in events if m == "PUT"}
                if method == "POST":
                    written |= set(kwargs["json_body"]["bulk_action"]["ids"])
                left = {t for t, _ in wanted} - written
                in_bulk = {t for t in left if any(t in s and len(s) > 1 for s in shared.values())}
                target = max(in_bulk or left)
                group = next(g for g in sim.labels()["group"] if g != sim.truth()[target]["group"])
                sim.agent_edit(target, group=group, tags=["customer-vip"])
                acted["target"] = target
            return response

        adapter.client.request = agent_after_first_write
        await push(ctx, decided, extracted, adapter)
    assert judge(sim, wanted) == CLEAN
    assert "customer-vip" in sim.ticket(acted["target"])["tags"]
    windows = residual_windows(events)
    with capsys.disabled():
        print(f"\nresidual window ({'bulk' if bulk else 'single'}): max {max(windows) * 1000:.1f} ms")
    assert max(windows) < 0.5


async def test_bulk_post_5xx_stops_push_and_a_later_run_sends_the_writes(make_ctx, adapter_for, sim, config):
    """Five 502s on the bulk POST: nothing is recorded failed for good. The task's retry sends the
    rest and leaves the cut-off request to settle; the next run (its window moved on) sends it."""
    write_config(config, sim, config.parent, bulk_settle_seconds=300)
    ctx = make_ctx()
    async with adapter_for(ctx) as adapter:
        extracted, decided, wanted = await decided_run(ctx, adapter, sim, ("group",))
        sim.faults.add(FaultRule("error", status=502, next=5, path="/bulk_update"))
        with pytest.raises(TransientError):
            await push(ctx, decided, extracted, adapter)
        sim.faults.clear()
        await push(ctx, decided, extracted, adapter)  # the task's retry: the run completes
    write_config(config, sim, config.parent, bulk_settle_seconds=0)  # the settle time has passed
    await later_run(make_ctx, adapter_for)
    assert judge(sim, wanted) == CLEAN
    assert not [r for r in results(ctx) if r["status"] == "failed"]


async def test_a_bulk_write_killed_while_waiting_out_a_429_is_sent_by_a_later_run(
    make_ctx, adapter_for, sim, config
):
    write_config(config, sim, config.parent, bulk_settle_seconds=300)
    ctx = make_ctx()
    killed: list[int] = []
    async with adapter_for(ctx) as adapter:
        extracted, decided, wanted = await decided_run(ctx, adapter, sim, ("group",))

        async def killed_while_waiting(ticket_ids, data):
            killed.extend(ticket_ids)
            raise Crash()  # the bulk POST was waiting out a 429: nothing reached the helpdesk

        adapter.bulk_update = killed_while_waiting
        with pytest.raises(Crash):
            await push(ctx, decided, extracted, adapter)
    async with adapter_for(ctx) as adapter:
        await push(ctx, decided, extracted, adapter)  # its job may still run: those tickets wait
    assert not [c for c in sim.changes if c.source == "bulk" and c.ticket_id in killed]
    write_config(config, sim, config.parent, bulk_settle_seconds=0)  # the settle time has passed
    await later_run(make_ctx, adapter_for)
    assert judge(sim, wanted) == CLEAN


@pytest.mark.parametrize(
    "fault",
    [
        FaultRule("drop", next=1, after=True, method="PUT"),
        FaultRule("error", status=504, next=1, after=True, method="PUT"),
        FaultRule("malformed", next=1, method="PUT"),
    ],
    ids=["dropped", "gateway-504", "malformed"],
)
async def test_a_lost_put_answer_is_checked_by_re_reading_not_resent(
    make_ctx, adapter_for, sim, config, fault
):
    write_config(config, sim, config.parent, bulk_update=False)
    ctx = make_ctx()
    async with adapter_for(ctx) as adapter:
        extracted, decided, wanted = await decided_run(ctx, adapter, sim)
        sim.faults.add(fault)
        await push(ctx, decided, extracted, adapter)
    assert judge(sim, wanted) == CLEAN
    puts = [w.path for w in sim.writes if w.method == "PUT"]
    assert len(puts) == len(set(puts)) == len({t for t, _ in wanted})  # one PUT per ticket, none resent


@pytest.mark.parametrize(
    "fault",
    [
        FaultRule("drop", next=1, after=True, path="/bulk_update"),
        FaultRule("error", status=502, next=1, after=True, path="/bulk_update"),
    ],
    ids=["dropped", "gateway-502"],
)
async def test_a_lost_bulk_answer_is_resolved_by_re_reading_not_resent(
    make_ctx, adapter_for, sim, config, fault
):
    write_config(config, sim, config.parent, bulk_settle_seconds=300)
    ctx = make_ctx()
    async with adapter_for(ctx) as adapter:
        extracted, decided, wanted = await decided_run(ctx, adapter, sim, ("group",))
        sim.faults.add(fault)
        with pytest.raises(TransientError):
            await push(ctx, decided, extracted, adapter)
        await push(ctx, decided, extracted, adapter)  # the task's retry: the job may still run
    write_config(config, sim, config.parent, bulk_settle_seconds=0)
    await later_run(make_ctx, adapter_for)
    assert judge(sim, wanted) == CLEAN
    assert any(r["reason_code"] == "confirmed_on_reread" for r in results(ctx))


async def test_a_failed_job_poll_is_resolved_by_re_reading_not_recorded_failed(
    make_ctx, adapter_for, sim, config
):
    ctx = make_ctx()
    async with adapter_for(ctx) as adapter:
        extracted, decided, wanted = await decided_run(ctx, adapter, sim, ("group",))
        sim.faults.add(FaultRule("error", status=500, next=50, path="/jobs/"))
        try:
            await push(ctx, decided, extracted, adapter)
        except TransientError:
            sim.faults.clear()
            await push(ctx, decided, extracted, adapter)
    assert judge(sim, wanted) == CLEAN
    statuses = {(r["ticket_id"], r["status"]) for r in results(ctx) if r["method"] == "bulk_update"}
    assert {s for _, s in statuses} == {"ok"}  # the analysts' failed-writes query lists none of them


@pytest.mark.parametrize("cut", ["answer_lost", "killed"])
async def test_a_cut_off_note_is_looked_up_in_the_conversations_and_the_rest_are_sent(
    make_ctx, adapter_for, sim, cut
):
    ctx = make_ctx(mode="suggest")
    async with adapter_for(ctx) as adapter:
        extracted, decided, wanted = await decided_run(ctx, adapter, sim)
        if cut == "answer_lost":
            sim.faults.add(FaultRule("drop", next=1, after=True, path="/notes"))
        else:
            real_note, sent = adapter.add_note, []

            async def killed_after_two(ticket_id, body, **kwargs):
                await real_note(ticket_id, body, **kwargs)
                sent.append(ticket_id)
                if len(sent) == 2:
                    raise Crash()

            adapter.add_note = killed_after_two
        with contextlib.suppress(TransientError, Crash):
            await push(ctx, decided, extracted, adapter)
    async with adapter_for(ctx) as adapter:
        await push(ctx, decided, extracted, adapter)
    notes = {t: len(sim.store.notes.get(t, [])) for t, _ in wanted}
    assert set(notes.values()) == {1}  # every suggestion note exactly once
    assert not [r for r in results(ctx) if r["status"] == "unknown"]


PUT, BULK, NOTES, JOBS = {"method": "PUT"}, {"path": "/bulk_update"}, {"path": "/notes"}, {"path": "/jobs/"}
MATRIX = {
    "put-429": ("update", FaultRule("storm", next=1, retry_after=0, **PUT)),
    "put-500": ("update", FaultRule("error", next=2, **PUT)),
    "put-503-outage": ("update", FaultRule("error", status=503, next=12, **PUT)),
    "put-dropped-before": ("update", FaultRule("drop", next=1, **PUT)),
    "put-dropped-after": ("update", FaultRule("drop", next=1, after=True, **PUT)),
    "bulk-429": ("bulk", FaultRule("storm", next=1, retry_after=0, **BULK)),
    "bulk-503": ("bulk", FaultRule("error", status=503, next=2, **BULK)),
    "bulk-dropped-before": ("bulk", FaultRule("drop", next=1, **BULK)),
    "bulk-malformed": ("bulk", FaultRule("malformed", next=1, **BULK)),
    "job-429": ("bulk", FaultRule("storm", next=1, retry_after=0, **JOBS)),
    "job-502": ("bulk", FaultRule("error", status=502, next=2, **JOBS)),
    "job-malformed": ("bulk", FaultRule("malformed", next=8, **JOBS)),
    "note-429": ("note", FaultRule("storm", next=1, retry_after=0, **NOTES)),
    "note-500": ("note", FaultRule("error", next=2, **NOTES)),
    "note-dropped-before": ("note", FaultRule("drop", next=1, **NOTES)),
    "note-504-after": ("note", FaultRule("error", status=504, next=1, after=True, **NOTES)),
    "note-malformed": ("note", FaultRule("malformed", next=1, **NOTES)),
}


@pytest.mark.parametrize("case", list(MATRIX))
async def test_faults_on_every_write_path_lose_double_and_overwrite_nothing(
    make_ctx, adapter_for, sim, config, case
):
    """Each fault on its write path; push retried as its Prefect task would be, then the next run."""
    kind, fault = MATRIX[case]
    write_config(config, sim, config.parent, bulk_update=kind == "bulk", bulk_settle_seconds=300)
    ctx = make_ctx(mode="suggest" if kind == "note" else None)
    async with adapter_for(ctx) as adapter:
        extracted, decided, wanted = await decided_run(
            ctx, adapter, sim, ("group",) if kind == "bulk" else None
        )
    sim.faults.add(fault)
    for attempt in range(3):
        try:
            async with adapter_for(ctx) as adapter:
                await push(ctx, decided, extracted, adapter)
            break
        except TicketSystemError as exc:
            assert is_transient(exc) and attempt < 2
    sim.faults.clear()
    write_config(config, sim, config.parent, bulk_update=kind == "bulk", bulk_settle_seconds=0)
    await later_run(make_ctx, adapter_for)
    if kind == "note":
        assert {len(sim.store.notes.get(t, [])) for t, _ in wanted} == {1}
    else:
        assert judge(sim, wanted) == CLEAN


async def test_an_owed_write_gives_way_to_a_newer_decision_on_its_ticket(make_ctx, adapter_for, sim, config):
    write_config(config, sim, config.parent, bulk_update=False)
    ctx = make_ctx()
    async with adapter_for(ctx) as adapter:
        extracted, decided, wanted = await decided_run(ctx, adapter, sim, ("group",))
        sim.faults.add(FaultRule("error", status=503, next=100, method="PUT"))
        with pytest.raises(TransientError):
            await push(ctx, decided, extracted, adapter)  # every write owed
    sim.faults.clear()
    target = min(t for t, _ in wanted)
    other = next(g for g in sim.labels()["group"] if g != sim.truth()[target]["group"])

    def choose(ticket_id, field):
        return (other if ticket_id == target else sim.truth()[ticket_id]["group"], 0.95)

    newer = make_ctx("run-2")
    async with adapter_for(newer) as adapter:
        extracted2 = await extract(newer, adapter)
        predicted = fake_predictions(newer, extracted2, choose, fields=("group",))
        decided2 = decide(newer, extracted2, predicted, await adapter.get_fields())
        await push(newer, decided2, extracted2, adapter)
    specs = {"group": sim.store.account.group_id}
    assert sim.ticket(target)["group_id"] == specs["group"](other)
    assert judge(sim, {**wanted, (target, "group"): specs["group"](other)}) == CLEAN
    assert (target, "superseded") in {(r["ticket_id"], r["reason_code"]) for r in results(ctx)}


async def test_a_bulk_job_report_missing_a_ticket_is_checked_by_re_reading(make_ctx, adapter_for, sim):
    ctx = make_ctx()
    async with adapter_for(ctx) as adapter:
        extracted, decided, wanted = await decided_run(ctx, adapter, sim, ("group",))
        real = adapter.bulk_update

        async def report_without_one(ticket_ids, data):
            result = await real(ticket_ids, data)
            first, *rest = result.succeeded
            return dataclasses.replace(result, succeeded=tuple(rest), failed={first: "PARTIAL: no result"})

        adapter.bulk_update = report_without_one
        await push(ctx, decided, extracted, adapter)
    assert judge(sim, wanted) == CLEAN
    assert {r["status"] for r in results(ctx)} == {"ok"}


async def test_a_cut_off_note_on_a_ticket_gone_for_good_does_not_block_push(make_ctx, adapter_for, sim):
    from triage.lake.runs import utcnow
    from triage.lake.tables.audit import AuditRow
    from triage.tasks.audit import write_audit

    ctx = make_ctx(mode="suggest")
    intent = AuditRow(
        run_id="crashed-run",
        decision_run_id="crashed-run",
        write_id="w-1",
        phase="intent",
        ticket_id=999_999,  # no such ticket: its conversations answer 404
        field="group",
        label="Billing",
        method="note",
        status="pending",
        snapshot_updated_at=utcnow(),
        sent_at=utcnow(),
    )
    write_audit(ctx.lake(), [intent], run_id="crashed-run", partition=ctx.partition)
    async with adapter_for(ctx) as adapter:
        extracted, decided, wanted = await decided_run(ctx, adapter, sim)
        await push(ctx, decided, extracted, adapter)
    assert {len(sim.store.notes.get(t, [])) for t, _ in wanted} == {1}
    gone = sorted((r["status"], r["reason_code"]) for r in results(ctx) if r["ticket_id"] == 999_999)
    assert gone == [("not_applied", "not_found_on_reread"), ("skipped", "unreadable")]
