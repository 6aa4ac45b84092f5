"""The account's tags: the generated history's follow the text (so a model can learn them), a data
file's come from its tag columns, and each open ticket's hidden tags are kept for scoring."""

from collections import Counter
from pathlib import Path

from triage.simulator import Simulator, SimulatorConfig
from triage.simulator.dataset import load_labelled


def test_the_generated_history_is_tagged_by_what_its_tickets_say():
    sim = Simulator(SimulatorConfig(tickets=600, open_tickets=60, seed=3))
    history = [t for t in sim.store.tickets.values() if t.id not in sim.truth()]
    urgent = [t for t in history if t.priority == 4]
    assert urgent and all("escalated" in t.tags for t in urgent)
    assert not any("escalated" in t.tags for t in history if t.priority != 4)
    assert all(("refund" in t.tags) == (t.type == "Refund") for t in history)
    counts = Counter(tag for t in history for tag in t.tags)
    assert counts["mobile"] > 0 and counts["vip"] > 0  # and the agents' own, unrelated tags
    hidden = sim.true_tags()
    assert set(hidden) == set(sim.truth())
    assert all(("refund" in hidden[t]) == (sim.truth()[t]["type"] == "Refund") for t in hidden)
    assert all(not sim.store.tickets[t].tags for t in hidden)  # open tickets are not tagged yet


def test_a_data_files_tag_columns_become_its_tickets_tags(tmp_path: Path):
    path = tmp_path / "tickets.csv"
    path.write_text(
        "subject,body,queue,priority,type,tag_1,tag_2,tag_10\n"
        "a,b,Q,low,Incident,Network,network,VPN\n"
        "c,d,Q,high,Request,,a;b,\n"
        'e,f,Q,high,Request,"x,y",ok,\n'
    )
    assert [row.tags for row in load_labelled(path)] == [("Network", "VPN"), ("a;b",), ("ok",)]
