"""Seeding: the generator (deterministic, learnable but noisy), files, the fixtures, hidden truth."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

from triage.simulator import DatasetError, Simulator, SimulatorConfig, run_simulator
from triage.simulator.generator import generate_tickets

SHARED_CSV = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "data"
    / "tobi_bueck"
    / "combined_v4v5_sample_en_de_dedup.csv"
)


def test_the_generator_is_deterministic_per_seed():
    assert list(generate_tickets(50, seed=1)) == list(generate_tickets(50, seed=1))
    assert list(generate_tickets(50, seed=1)) != list(generate_tickets(50, seed=2))
    a, b = (
        Simulator(SimulatorConfig(tickets=300, open_tickets=30, seed=5)),
        Simulator(SimulatorConfig(tickets=300, open_tickets=30, seed=5)),
    )
    assert a.truth() == b.truth()
    assert [t.subject for t in a.store.tickets.values()] == [t.subject for t in b.store.tickets.values()]


def test_generated_text_is_learnable_but_not_trivially():
    tickets = list(generate_tickets(2000, seed=9))
    languages = Counter(t.language for t in tickets)
    assert 0.25 < languages["de"] / len(tickets) < 0.45
    assert len({t.group for t in tickets}) == 7 and len({t.type for t in tickets}) == 5
    assert len({t.priority for t in tickets}) == 4
    texts = [f"{t.subject}\n{t.body}" for t in tickets]
    train, test = slice(0, 1500), slice(1500, None)
    features = TfidfVectorizer(ngram_range=(1, 2), min_df=2).fit(texts[train])
    x_train, x_test = features.transform(texts[train]), features.transform(texts[test])
    for field, floor, ceiling in (
        ("group", 0.7, 0.95),
        ("type", 0.7, 0.95),
        ("priority", 0.55, 0.9),
        ("product", 0.45, 0.9),
    ):
        labels = [getattr(t, field) for t in tickets]
        model = LinearSVC().fit(x_train, labels[train])
        accuracy = (model.predict(x_test) == labels[test]).mean()
        majority = Counter(labels[train]).most_common(1)[0][1] / 1500
        assert accuracy > max(floor, majority + 0.1), (field, accuracy, majority)
        assert accuracy < ceiling, (field, accuracy)  # noise keeps it from being trivial


def test_fixture_mix_history_open_spam_deleted_and_custom_statuses():
    sim = Simulator(SimulatorConfig(tickets=3000, open_tickets=300, seed=4, history_days=120))
    tickets = list(sim.store.tickets.values())
    statuses = Counter(t.status for t in tickets if not (t.spam or t.deleted))
    assert {2, 3, 4, 5, 6, 7} <= set(statuses)
    assert sum(t.spam for t in tickets) > 5 and sum(t.deleted for t in tickets) > 5
    now = time.time()
    assert sum(t.created_at < now - 31 * 86400 for t in tickets) > 1000
    history = [t for t in tickets if t.status in (4, 5)]
    assert all(t.group_id and t.type and t.custom_fields["cf_product"] and t.responder_id for t in history)
    open_ids = set(sim.truth())
    assert len(open_ids) == 300
    for tid in open_ids:
        t = sim.store.tickets[tid]
        assert (t.status, t.group_id, t.priority, t.type, t.custom_fields["cf_product"]) == (
            2,
            None,
            1,
            None,
            None,
        )
        assert set(sim.truth()[tid]) == {"group", "priority", "type", "cf_product"}
    assert min(open_ids) > max(t.id for t in history)  # display ids follow creation time
    assert all(t.updated_at >= t.created_at for t in tickets)


def test_hidden_labels_never_appear_through_the_api(sim, client):
    truth = sim.truth()
    rows = []
    page = 1
    while True:
        params = {
            "updated_since": "2000-01-01",
            "per_page": 100,
            "page": page,
            "include": "description,stats,requester,company",
        }
        response = client.get("/tickets", params=params)
        rows += response.json()
        if "link" not in response.headers:
            break
        page += 1
    open_rows = [r for r in rows if r["id"] in truth]
    assert len(open_rows) == len(truth)
    known_keys = set(rows[0]) | {"attachments", "source_additional_info", "conversations", "deleted"}
    for row in open_rows:
        assert (row["group_id"], row["type"], row["priority"], row["custom_fields"]["cf_product"]) == (
            None,
            None,
            1,
            None,
        )
        view = client.get(
            f"/tickets/{row['id']}", params={"include": "stats,requester,company,conversations"}
        ).json()
        assert set(view) <= known_keys
    groups = client.get("/ticket_fields", params={"type": "default_group"}).json()[0]["choices"]
    for name, gid in groups.items():
        found = client.get("/search/tickets", params={"query": f'"group_id:{gid}"'}).json()["results"]
        assert not {r["id"] for r in found} & set(truth), name
    assert sim.writes == []


def test_due_dates_of_open_tickets_do_not_give_away_their_hidden_priority():
    """Freshdesk derives SLA due dates from the ticket's priority; an untriaged ticket is Low."""
    sim = Simulator(SimulatorConfig(tickets=400, open_tickets=120, seed=5))
    sim.add_tickets(30)
    spans: dict[str, set[tuple[str, str]]] = {}
    for ticket_id, labels in sim.truth().items():
        view = sim.ticket(ticket_id)
        spans.setdefault(labels["priority"], set()).add(
            (
                _seconds(view["due_by"]) - _seconds(view["created_at"]),
                _seconds(view["fr_due_by"]) - _seconds(view["created_at"]),
            )
        )
    assert len(spans) > 1  # several hidden priorities among the open tickets
    assert len(set.union(*spans.values())) == 1, spans


def _seconds(stamp: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())


def test_new_open_tickets_can_be_added(sim, client):
    before = len(sim.truth())
    ids = sim.add_tickets(5)
    assert len(sim.truth()) == before + 5 and set(ids) <= set(sim.truth())
    assert ids == list(range(max(ids) - 4, max(ids) + 1))
    newest = client.get("/tickets", params={"order_by": "created_at"}).json()[:5]
    assert sorted(t["id"] for t in newest) == ids


def test_seeding_from_a_csv_maps_queues_priorities_and_types(tmp_path):
    data = tmp_path / "tickets.csv"
    data.write_text(
        "subject,body,queue,priority,type,language\n"
        "Printer broken,The office printer is jammed.\\nPlease help,IT Support,high,Incident,en\n"
        "Rechnung falsch,Die Rechnung ist zu hoch,Billing and Payments,low,Request,de\n"
        "VPN down,Cannot connect to the VPN,IT Support,medium,Problem,en\n"
        ",Only a body here,General Inquiry,critical,Request,en\n"
    )
    expected = {
        "Printer broken": ("IT Support", "High", "Incident", "Hardware"),
        "Rechnung falsch": ("Billing and Payments", "Low", "Request", "Account"),
        "VPN down": ("IT Support", "Medium", "Problem", "Network"),
        "": ("General Inquiry", "Urgent", "Request", "Other"),
    }
    config = SimulatorConfig(
        data=data, tickets=None, open_tickets=1, seed=1, spam_fraction=0, deleted_fraction=0
    )
    with run_simulator(config) as sim:
        assert sim.labels()["group"] == ["Billing and Payments", "General Inquiry", "IT Support"]
        assert sim.labels()["type"] == ["Incident", "Problem", "Request"]
        assert sim.labels()["cf_product"] == [
            "Account",
            "Hardware",
            "Network",
            "Other",
        ]  # derived from keywords
        fields = httpx.get(f"{sim.base_url}/ticket_fields", auth=(sim.api_key, "X")).json()
        group_ids = next(f for f in fields if f["name"] == "group")["choices"]
        priorities = {"Low": 1, "Medium": 2, "High": 3, "Urgent": 4}
        truth = sim.truth()
        assert len(truth) == 1
        for ticket in sim.store.tickets.values():
            group, priority, ticket_type, product = expected[ticket.subject]
            if ticket.id in truth:
                assert truth[ticket.id] == {
                    "group": group,
                    "priority": priority,
                    "type": ticket_type,
                    "cf_product": product,
                }
                assert ticket.group_id is None
            else:
                assert (ticket.group_id, ticket.priority, ticket.type) == (
                    group_ids[group],
                    priorities[priority],
                    ticket_type,
                )
                assert ticket.custom_fields["cf_product"] == product
                assert ticket.status in (3, 4, 5, 6, 7)
        printer = next(t for t in sim.store.tickets.values() if t.subject == "Printer broken")
        assert printer.description_text == "The office printer is jammed.\nPlease help"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("subject,body,queue,type\nx,y,z,Incident\n", "missing column(s) priority"),
        ("subject,body,queue,priority,type\nx,y,z,extreme,Incident\n", "row 2: priority 'extreme'"),
        ("subject,body,queue,priority,type\nx,y,,low,Incident\n", "row 2: queue and type must not be empty"),
    ],
)
def test_bad_files_fail_with_a_clear_error(tmp_path, content, message):
    data = tmp_path / "bad.csv"
    data.write_text(content)
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Simulator(SimulatorConfig(data=data, tickets=None, open_tickets=0))
    with pytest.raises(ValueError, match="cannot seed 50"):
        Simulator(SimulatorConfig(data=_good_csv(tmp_path), tickets=50, open_tickets=1))


def _good_csv(tmp_path: Path) -> Path:
    path = tmp_path / "good.csv"
    path.write_text("subject,body,queue,priority,type\na,b,Q,low,Incident\n")
    return path


@pytest.mark.skipif(not SHARED_CSV.is_file(), reason="shared data not present")
def test_seeding_from_the_shared_tobi_bueck_csv():
    sim = Simulator(SimulatorConfig(data=SHARED_CSV, tickets=None, open_tickets=400, seed=42))
    assert len(sim.store.tickets) == 4053
    assert len(sim.labels()["group"]) == 10 and sim.labels()["type"] == [
        "Change",
        "Incident",
        "Problem",
        "Request",
    ]
    truth = sim.truth()
    assert len(truth) == 400
    assert Counter(labels["priority"] for labels in truth.values()).keys() <= {"Low", "Medium", "High"}
    assert {t.language for t in sim.store.tickets.values()} == {"en", "de"}
    assert not any("\\n" in t.description_text for t in sim.store.tickets.values())


def test_seeding_from_parquet_with_a_product_column(tmp_path):
    import pandas as pd

    path = tmp_path / "tickets.parquet"
    rows = [
        {
            "subject": f"s{i}",
            "body": f"b{i}",
            "queue": "Q1" if i % 2 else "Q2",
            "priority": "low",
            "type": "Incident",
            "product": "Alpha",
        }
        for i in range(6)
    ]
    pd.DataFrame(rows).to_parquet(path)
    sim = Simulator(
        SimulatorConfig(data=path, tickets=2, open_tickets=1, spam_fraction=0, deleted_fraction=0)
    )
    assert sim.labels()["cf_product"] == ["Alpha"]
    assert all(labels["cf_product"] == "Alpha" for labels in sim.truth().values())
    new = sim.add_tickets(4)  # the rows not seeded become new open tickets
    assert len(sim.truth()) == 5
    subjects = {t.subject for t in sim.store.tickets.values()}
    assert subjects == {f"s{i}" for i in range(6)}
    assert all(sim.ticket(i)["group_id"] is None for i in new)
    with pytest.raises(ValueError, match="unused rows"):
        sim.add_tickets(1)
