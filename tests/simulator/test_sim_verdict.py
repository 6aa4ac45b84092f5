"""The write-safety judges find what they are for: a lost, a doubled and an overwritten write."""

from __future__ import annotations

from triage.simulator.verdict import judge, native_value

CLEAN = {"lost": [], "doubled": [], "overwritten": []}


def test_a_clean_write_is_clean_and_a_missing_one_is_lost(sim, client):
    first, second = sorted(sim.truth())[:2]
    urgent = native_value(sim, "priority", "Urgent")
    assert client.put(f"/tickets/{first}", json={"priority": urgent}).status_code == 200
    assert judge(sim, {(first, "priority"): urgent}) == CLEAN
    found = judge(sim, {(second, "priority"): urgent})
    assert found["lost"] == [(second, "priority", urgent, sim.ticket(second)["priority"])]


def test_the_same_value_sent_twice_is_doubled(sim, client):
    tid = min(sim.truth())
    for _ in range(2):
        assert client.put(f"/tickets/{tid}", json={"type": "Incident"}).status_code == 200
    assert ("sent twice", tid, "type", repr("Incident")) in judge(sim, {})["doubled"]


def test_a_write_over_an_agents_value_is_overwritten_and_the_agents_field_is_not_lost(sim, client):
    tid = min(sim.truth())
    sim.agent_edit(tid, priority="Medium")
    assert client.put(f"/tickets/{tid}", json={"priority": 4}).status_code == 200
    found = judge(sim, {(tid, "priority"): 4})
    assert found["overwritten"] == [(tid, "priority", 2, 4)] and found["lost"] == []
    sim.agent_edit(tid, priority="Low")  # the agent's choice stands: not lost
    assert judge(sim, {(tid, "priority"): 4})["lost"] == []
