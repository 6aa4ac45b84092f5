"""The incremental read while the simulator's agents edit tickets, judged by the simulator's own state.

An edit moves a ticket to the end of the ``updated_at`` order. Offset pages then shift, and a row
not yet read can slide onto a page already read; the reader must lose no ticket to that.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from triage.adapters.base import Ticket
from triage.adapters.freshdesk import FreshdeskAdapter, FreshdeskConfig, incremental
from triage.simulator import Simulator, SimulatorConfig, run_simulator
from triage.simulator.timeutil import format_ts

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
SLACK = timedelta(seconds=5)
UNLIMITED = {"plan": "custom", "rate_limit_total": 10**6, "rate_limit_tickets_list": 10**6}


@pytest.fixture(autouse=True)
def small_pages(monkeypatch):
    """Pages of 20, so a read of a few thousand tickets takes 100+ pages and edits land in between."""
    monkeypatch.setattr(incremental, "PER_PAGE", 20)


def connect(sim: Simulator) -> FreshdeskAdapter:
    return FreshdeskAdapter(
        FreshdeskConfig(base_url=sim.base_url, freshdesk_api_key=sim.api_key, **UNLIMITED)
    )


def listed_now(sim: Simulator) -> set[int]:
    """Ids of the tickets ``GET /tickets`` lists now (not spam, not deleted)."""
    return {
        tid for tid in sim.ticket_ids() if not (sim.ticket(tid)["spam"] or sim.ticket(tid).get("deleted"))
    }


async def read_ids(adapter: FreshdeskAdapter, since: datetime) -> set[int]:
    return {t.id async for t in adapter.iter_updated_tickets(since)}


def agent_edits(sim: Simulator) -> int:
    return sum(change.source == "agent" for change in sim.changes)


async def assert_none_lost(
    sim: Simulator, adapter: FreshdeskAdapter, before: set[int], began: int, read: set[int]
):
    """Every ticket listed when a read began (``began``: the simulator's clock) was read, or an agent
    edited it since (the read ends about the present when it began: its new version is the next
    read's), and once the edits stop, the next read, from a few seconds before the first began (as
    push's next re-read), reads it."""
    missing = before - read
    edited = {c.ticket_id for c in sim.changes if c.source == "agent" and c.time >= format_ts(began)}
    assert missing <= edited, (
        f"{len(missing - edited)} tickets unchanged since the read began were never read"
    )
    since = datetime.fromtimestamp(began, UTC) - SLACK
    latest = max((sim.ticket(t)["updated_at"] for t in missing), default="")
    ahead = int(incremental.PRESENT_SLACK.total_seconds())  # how far past its Date a read goes
    while format_ts(sim.clock.now() + ahead) <= latest:  # the simulator stamps a second edit a second on
        await asyncio.sleep(0.2)
    lost = missing - await asyncio.wait_for(read_ids(adapter, since), timeout=180)
    assert not lost, f"{len(lost)} edited tickets were not in the next read either"


async def test_agents_editing_between_pages_lose_no_ticket():
    """Two agent edits before each of the first 150 list pages (deterministic): no ticket lost, no
    version twice, in ascending ``updated_at`` order."""
    with run_simulator(SimulatorConfig(tickets=3_000, open_tickets=300, seed=21)) as sim:
        before, began = listed_now(sim), sim.clock.now()
        async with connect(sim) as adapter:
            request = adapter.client.request
            pages = 0

            async def editing(method, path, **kwargs):
                nonlocal pages
                if path == "/tickets" and pages < 150:
                    pages += 1
                    sim.random_agent_edit()
                    sim.random_agent_edit()
                return await request(method, path, **kwargs)

            adapter.client.request = editing
            read: list[Ticket] = [t async for t in adapter.iter_updated_tickets(EPOCH)]
            assert agent_edits(sim) > 250  # two per page over ~150 pages
            adapter.client.request = request
            await assert_none_lost(sim, adapter, before, began, {t.id for t in read})

    versions = [(t.id, t.updated_at) for t in read]
    assert len(versions) == len(set(versions)), "a version was yielded twice"
    stamps = [stamp for _, stamp in versions]
    assert stamps == sorted(stamps)


async def test_agents_at_work_on_the_server_thread_lose_no_ticket():
    """Agents at 12,000 edits a minute on the simulator's own thread while the adapter reads: every
    second fills more than a page. The read ends (before, without an end, it chased the present for as
    long as the agents worked) and loses no ticket."""
    config = SimulatorConfig(tickets=3_000, open_tickets=300, seed=22, agent_edits_per_minute=12_000)
    with run_simulator(config) as sim:
        before, began, edits_before = listed_now(sim), sim.clock.now(), agent_edits(sim)
        async with connect(sim) as adapter:
            read = await asyncio.wait_for(read_ids(adapter, EPOCH), timeout=180)
            edits_during = agent_edits(sim) - edits_before
            sim.agents.stop()
            await assert_none_lost(sim, adapter, before, began, read)

    assert edits_during >= 20, edits_during


async def test_a_mass_update_read_while_agents_edit_it_loses_no_ticket():
    """300 unresolved tickets edited in one go share a second or two (15+ pages of 20); agents keep
    editing between pages, so rows leave that second while it is paged through."""
    with run_simulator(SimulatorConfig(tickets=2_000, open_tickets=300, seed=23)) as sim:
        mass = [tid for tid in sim.truth()][:300]
        for tid in mass:
            sim.agent_edit(tid, tags=["mass-update"])
        before, began = listed_now(sim), sim.clock.now()
        pages: list[int] = []
        async with connect(sim) as adapter:
            request = adapter.client.request

            async def editing(method, path, **kwargs):
                if path == "/tickets":
                    pages.append(kwargs["params"]["page"])
                    sim.random_agent_edit()
                    sim.random_agent_edit()
                return await request(method, path, **kwargs)

            adapter.client.request = editing
            read = [(t.id, t.updated_at) async for t in adapter.iter_updated_tickets(EPOCH)]
            adapter.client.request = request
            await assert_none_lost(sim, adapter, before, began, {tid for tid, _ in read})

    assert max(pages) >= 5, "the crowded second was not paged through"
    assert len(read) == len(set(read))


async def test_an_edit_in_the_last_pass_over_a_crowded_second_hides_no_unread_ticket(monkeypatch):
    """Pages of 2; ten tickets share second T, one sits at T+1. Scripted edits (clock pinned, no
    randomness) move read tickets of T away between pages: in the first pass ticket 5 slides back
    onto page 2 already read; then two more edits around the next pass's page 1 slide it back
    again. Every ticket of the second must still be read."""
    monkeypatch.setattr(incremental, "PER_PAGE", 2)
    with run_simulator(SimulatorConfig(tickets=200, open_tickets=20, seed=24)) as sim:
        second = sim.clock.now() + 60
        pinned = [second]
        monkeypatch.setattr(sim.clock, "now", lambda: pinned[0])
        crowded = sim.ticket_ids()[:10]
        for tid in crowded:
            sim.agent_edit(tid, tags=["mass-update"])
        pinned[0] = second + 1
        sim.agent_edit(sim.ticket_ids()[10], tags=["later"])
        pinned[0] = second + 50  # edits made during the read land here
        a = dict(enumerate(crowded, start=1))  # a[n]: the n-th row of the crowded second
        # After list request n has been answered, this ticket is edited.
        plan = {2: a[1], 5: a[2], 6: a[3]}
        since = datetime.fromtimestamp(second, UTC)
        answered = 0
        async with connect(sim) as adapter:
            request = adapter.client.request

            async def editing(method, path, **kwargs):
                nonlocal answered
                if path == "/tickets" and answered in plan:
                    sim.agent_edit(plan.pop(answered), tags=["moved"])
                response = await request(method, path, **kwargs)
                answered += path == "/tickets"
                return response

            adapter.client.request = editing
            read = [(t.id, t.updated_at) async for t in adapter.iter_updated_tickets(since)]

    assert not plan, "the scripted edits were not all made"
    assert len(read) == len(set(read)), "a version was yielded twice"
    missing = set(crowded) - {tid for tid, _ in read}
    assert not missing, f"tickets {sorted(missing)} of the crowded second were never read"
    stamps = [stamp for _, stamp in read]
    assert stamps == sorted(stamps)
