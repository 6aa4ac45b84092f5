"""A busy helpdesk: agents editing at a rate, open tickets with values people set, a clock offset."""

from __future__ import annotations

import time
from collections import Counter
from email.utils import parsedate_to_datetime

import httpx
import pytest

from triage.simulator import Simulator, SimulatorConfig, run_simulator
from triage.simulator.agents import UNRESOLVED
from triage.simulator.timeutil import format_ts

EDITABLE = {"group_id", "priority", "type", "tags", "status"}


def state(sim: Simulator, ticket_id: int) -> dict:
    t = sim.store.tickets[ticket_id]
    return {
        "group_id": t.group_id,
        "priority": t.priority,
        "type": t.type,
        "tags": list(t.tags),
        "status": t.status,
    }


def test_random_agent_edits_change_one_field_of_an_unresolved_ticket_and_log_who_did_it():
    sim = Simulator(SimulatorConfig(tickets=600, open_tickets=60, seed=2))
    account = sim.store.account
    fields: Counter[str] = Counter()
    deliberate_lows = 0
    for _ in range(300):
        record = sim.random_agent_edit()
        assert record is not None and record.source == "agent"
        ((name, (old, new)),) = record.changes.items()
        ticket = sim.store.tickets[record.ticket_id]
        assert name in EDITABLE and old != new and state(sim, record.ticket_id)[name] == new
        assert format_ts(ticket.updated_at) == record.time  # when: the version the edit made
        assert record.actor in account.agents and record.actor != account.me
        if name == "group_id":
            assert new in account.groups and new in account.agents[record.actor].group_ids
        if name == "status":
            assert old in UNRESOLVED and new in UNRESOLVED
        fields[name] += 1
        deliberate_lows += name == "priority" and new == 1
    assert set(fields) == EDITABLE
    assert deliberate_lows >= 10


def test_agents_edit_at_the_configured_rate_while_served_and_stop_with_the_server():
    with run_simulator(
        SimulatorConfig(tickets=400, open_tickets=40, seed=3, agent_edits_per_minute=3_000)
    ) as sim:
        started = time.monotonic()
        time.sleep(1.0)
        edits = sim.agents_status()["edits"]
        elapsed = time.monotonic() - started
        assert sim.agents.running
    assert 10 <= edits <= 50 * elapsed + 2  # 50 a second at most; a busy machine may make fewer
    assert not sim.agents.running
    time.sleep(0.2)
    assert sim.agents_status()["edits"] == len([c for c in sim.changes if c.source == "agent"]) >= edits


def test_by_default_no_agent_is_at_work_and_open_tickets_are_all_defaults():
    with run_simulator(SimulatorConfig(tickets=300, open_tickets=30, seed=4)) as sim:
        time.sleep(0.2)
        assert not sim.agents.running and sim.changes == []
        assert all(
            state(sim, tid)["priority"] == 1 and state(sim, tid)["group_id"] is None for tid in sim.truth()
        )


def test_preset_open_tickets_carry_requester_and_agent_values_logged_with_who_and_when():
    config = SimulatorConfig(tickets=1_000, open_tickets=200, seed=5, open_preset_fraction=0.5)
    sim = Simulator(config)
    account = sim.store.account
    plain = Simulator(SimulatorConfig(tickets=1_000, open_tickets=200, seed=5))
    by_source = Counter(c.source for c in sim.changes)
    assert (
        by_source["requester"] > 20 and by_source["agent"] > 20 and set(by_source) == {"requester", "agent"}
    )
    touched = {c.ticket_id for c in sim.changes}
    assert touched <= set(sim.truth()) and 50 < len(touched) < 150  # about half of the 200 open tickets
    for change in sim.changes:
        ticket = sim.store.tickets[change.ticket_id]
        if change.source == "requester":
            assert change.actor == ticket.requester_id and change.time == format_ts(ticket.created_at)
        else:
            assert change.actor in account.agents and change.time == format_ts(ticket.updated_at)
            assert change.changes["group_id"] == (None, account.group_id(sim.truth()[ticket.id]["group"]))
    lows = [c for c in sim.changes if c.source == "agent" and c.changes.get("priority", (None, None))[1] == 1]
    assert len(lows) >= 5  # an agent lowered a requester's priority to Low on purpose
    assert all(sim.store.tickets[c.ticket_id].priority == 1 for c in lows)
    # the rest of the account is seeded as without presets
    untouched = [tid for tid in sim.store.tickets if tid not in touched]
    assert (
        all(vars_of(sim.store.tickets[tid]) == vars_of(plain.store.tickets[tid]) for tid in untouched)
        and sim.truth() == plain.truth()
    )


def vars_of(ticket) -> tuple:
    return (ticket.subject, ticket.group_id, ticket.priority, ticket.type, ticket.updated_at, ticket.status)


def test_clock_offset_puts_every_timestamp_behind_or_ahead():
    behind = Simulator(SimulatorConfig(tickets=200, open_tickets=20, seed=6, clock_offset_seconds=-7_200))
    now = time.time()
    assert abs(behind.clock.time() - (now - 7_200)) < 5
    newest = max(t.updated_at for t in behind.store.tickets.values())
    assert newest <= now - 7_200
    record = behind.random_agent_edit()
    assert record is not None and abs(behind.store.tickets[record.ticket_id].updated_at - (now - 7_200)) < 5
    behind.set_clock_offset(300)
    behind.reset()
    assert abs(behind.clock.time() - (time.time() - 7_200)) < 5  # reset restores the configured offset


def test_answers_carry_the_simulators_clock_as_their_date():
    """One ``Date`` per answer over HTTP, from the simulator's clock (its offset too): a read without an
    end ends by it."""
    config = SimulatorConfig(tickets=50, open_tickets=5, seed=7, clock_offset_seconds=-7_200)
    with run_simulator(config) as sim:
        params = {"updated_since": "2000-01-01T00:00:00Z"}
        response = httpx.get(f"{sim.base_url}/tickets", params=params, auth=(sim.api_key, "X"))
    dates = response.headers.get_list("date")
    assert response.status_code == 200 and len(dates) == 1
    assert abs(parsedate_to_datetime(dates[0]).timestamp() - (time.time() - 7_200)) < 5


@pytest.mark.parametrize(
    "settings",
    [
        {"open_preset_fraction": 1.5},
        {"open_preset_fraction": -0.1},
        {"agent_edits_per_minute": -1},
        {"agent_edits_per_minute": 10**9},
    ],
)
def test_bad_busy_settings_are_refused(settings):
    with pytest.raises(ValueError):
        SimulatorConfig(**settings)


@pytest.fixture
def admin(sim):
    root = sim.base_url.removesuffix("/api/v2") + "/_simulator"
    with httpx.Client(base_url=root, auth=(sim.api_key, "X")) as http:
        yield http


def test_admin_sets_agents_to_work_makes_edits_and_shifts_the_clock(sim, admin):
    assert admin.get("/agents").json() == {"edits_per_minute": 0.0, "running": False, "edits": 0}
    assert admin.put("/agents", json={"edits_per_minute": 600}).json()["running"] is True
    assert sim.agents.per_minute == 600
    assert admin.put("/agents", json={"edits_per_minute": 0}).json()["running"] is False
    for bad in (-1, "fast", True, 10**9):
        response = admin.put("/agents", json={"edits_per_minute": bad})
        assert response.status_code == 400 and "edits_per_minute" in response.json()["error"]
    made = admin.post("/agents/edit", json={"count": 3}).json()
    assert len(made) == 3 and {m["source"] for m in made} == {"agent"}
    assert all(m["actor"] in sim.store.account.agents for m in made)
    assert admin.get("/changes", params={"since": len(sim.changes) - 3}).json() == made
    assert admin.post("/agents/edit", json={"count": 0}).status_code == 400
    assert admin.post("/clock", json={"offset": -90}).json() == {"offset_seconds": -90.0}
    assert admin.post("/clock", json={"offset": "soon"}).status_code == 400
    assert abs(sim.clock.time() - (time.time() - 90)) < 5
    ticket_id = min(sim.truth())
    admin.post(f"/tickets/{ticket_id}/agent_edit", json={"priority": "High", "agent_id": made[0]["actor"]})
    assert sim.changes[-1].actor == made[0]["actor"] and sim.changes[-1].changes == {"priority": (1, 3)}
    assert (
        admin.post(f"/tickets/{ticket_id}/agent_edit", json={"priority": 1, "agent_id": 5}).status_code == 400
    )
