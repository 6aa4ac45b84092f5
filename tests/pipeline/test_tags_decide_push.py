"""Tags (the multi-label head) in decide and push planning: only added, never one the ticket has."""

from datetime import UTC, datetime

from triage.adapters.base import Ticket
from triage.tasks.audit import change_key
from triage.tasks.push_plan import Change, plan_writes, recheck
from triage.tasks.rules import Prediction, decide_tags

T0 = datetime(2026, 11, 29, 9, tzinfo=UTC)
T1 = datetime(2026, 11, 29, 10, tzinfo=UTC)


def ticket(ticket_id, updated=T0, **values):
    return Ticket(id=ticket_id, created_at=T0, updated_at=updated, **values)


def change(ticket_id, field, label, p=0.9):
    return Change(ticket_id, field, label, p, "run-1", "v1", T0)


def run_recheck(changes, fresh=None, done=frozenset(), snapshots=None):
    snapshots = snapshots or {c.ticket_id: ticket(c.ticket_id) for c in changes}
    return recheck(
        changes, method="update", done=set(done), pending=set(), snapshots=snapshots, fresh=fresh or {},
        specs={}, rules={},
    )  # fmt: skip


THRESHOLDS = {"urgent": (0.8, 0.6), "vpn": (0.7, 0.5), "printer": (None, None), "billing": (0.9, None)}


def test_decide_adds_a_tag_on_its_own_threshold_and_never_proposes_one_the_ticket_has():
    ranked = [
        Prediction("urgent", 0.95),  # confident, but the ticket has it (in another case)
        Prediction("vpn", 0.75),  # confident: added
        Prediction("billing", 0.95),  # confident, but suggest-only
        Prediction("printer", 0.99),  # no threshold at all: nothing
    ]
    out = decide_tags(
        ["URGENT", "agent-tag"], ranked, thresholds=THRESHOLDS, suggest_only={"billing": "few rows"}
    )
    by_tag = {d.predicted_label: d for d in out}
    assert set(by_tag) == {"urgent", "vpn", "billing"}
    assert (by_tag["urgent"].action, by_tag["urgent"].reason_code) == ("skip", "already_set")
    assert (by_tag["vpn"].action, by_tag["vpn"].label, by_tag["vpn"].reason_code) == (
        "apply",
        "vpn",
        "confident",
    )
    assert (by_tag["billing"].action, by_tag["billing"].reason_code) == ("suggest", "class_suggest_only")
    assert all(d.field == "tags" for d in out)
    # in the suggest band: suggested; below every threshold: no row
    out = decide_tags(
        [], [Prediction("urgent", 0.7), Prediction("vpn", 0.4)], thresholds=THRESHOLDS, suggest_only={}
    )
    assert [(d.label, d.action, d.reason_code) for d in out] == [("urgent", "suggest", "suggest_band")]
    # whatever the probabilities, a tag the ticket has is never applied or suggested
    for p in (0.0, 0.55, 0.65, 0.85, 1.0):
        for d in decide_tags(
            ["Urgent", "vpn"],
            [Prediction("urgent", p), Prediction("vpn", p)],
            thresholds=THRESHOLDS,
            suggest_only={},
        ):
            assert d.action == "skip"


def test_push_adds_tags_beside_the_triaged_tag_and_skips_one_already_there():
    changes = [change(1, "tags", "vpn"), change(1, "tags", "urgent"), change(1, "group", "Billing")]
    fresh = {1: ticket(1, T1, tags=("Urgent", "agent-tag"))}  # an agent added urgent since the snapshot
    kept, skipped = run_recheck(changes, fresh=fresh)
    assert [(s.change.label, s.reason_code) for s in skipped] == [("urgent", "already_set")]
    (request,) = plan_writes(kept, tag="ai-triaged", bulk=True, bulk_min_tickets=2)
    assert request.data == {"group": "Billing", "tags": ["ai-triaged", "vpn"]}
    # tickets with the same tags to add go out together in one bulk update (Freshdesk appends tags)
    same = [change(2, "tags", "vpn"), change(3, "tags", "vpn")]
    (bulk,) = plan_writes(same, tag=None, bulk=True, bulk_min_tickets=2)
    assert (bulk.method, bulk.ticket_ids, bulk.data) == ("bulk_update", (2, 3), {"tags": ["vpn"]})


def test_a_tag_triage_added_before_and_an_agent_removed_is_left_alone():
    snapshot = ticket(1, T0, tags=("other",))  # our vpn was added by an earlier run, then removed
    kept, skipped = run_recheck(
        [change(1, "tags", "vpn")],
        snapshots={1: snapshot},
        done={change_key(1, "tags", "vpn", "update")},
    )
    assert kept == []
    assert [(s.change.label, s.reason_code) for s in skipped] == [("vpn", "agent_changed")]
