"""Push planning as pure functions: what is re-checked away, and how requests are grouped."""

from datetime import UTC, datetime

from triage.adapters.base import FieldSpec, Ticket
from triage.settings import FieldRule
from triage.tasks.audit import change_key
from triage.tasks.push_plan import Change, note_body, plan_notes, plan_writes, recheck

T0 = datetime(2026, 11, 29, 9, tzinfo=UTC)
T1 = datetime(2026, 11, 29, 10, tzinfo=UTC)
SPECS = {
    "group": FieldSpec("group", "Group", "group", {"Billing": 1, "Sales & <Ops>": 2}),
    "priority": FieldSpec("priority", "Priority", "priority", {"Low": 1, "High": 3}, default="Low"),
}
RULES = {"group": FieldRule(), "priority": FieldRule(requires=["group"])}


def ticket(ticket_id, updated=T0, **values):
    return Ticket(id=ticket_id, created_at=T0, updated_at=updated, **{"priority": 1, **values})


def change(ticket_id, field, label, p=0.9):
    return Change(ticket_id, field, label, p, "run-1", "v1", T0)


def run_recheck(changes, fresh=None, done=frozenset(), pending=frozenset(), snapshots=None):
    snapshots = snapshots or {c.ticket_id: ticket(c.ticket_id) for c in changes}
    return recheck(
        changes,
        method="update",
        done=set(done),
        pending=set(pending),
        snapshots=snapshots,
        fresh=fresh or {},
        specs=SPECS,
        rules=RULES,
    )


def test_recheck_drops_done_changes_and_skips_what_changed_since_the_snapshot():
    changes = [
        change(1, "group", "Billing"),
        change(2, "group", "Billing"),
        change(3, "group", "Billing"),
        change(4, "group", "Billing"),
        change(5, "group", "Billing"),
    ]
    fresh = {
        2: ticket(2, T1, group_id=2),  # an agent set another group
        3: ticket(3, T1, group_id=1),  # someone already set ours
        4: ticket(4, T1, spam=True),
    }
    kept, skipped = run_recheck(
        changes, fresh=fresh, done={change_key(1, "group", "Billing", "update")}, pending={5}
    )
    assert kept == []
    assert {s.change.ticket_id: s.reason_code for s in skipped} == {
        2: "agent_changed",
        3: "already_set",
        4: "gone",
        5: "unresolved_write",
    }
    assert "Sales & <Ops>" in next(s.message for s in skipped if s.change.ticket_id == 2)


def test_a_change_elsewhere_on_the_ticket_does_not_block_a_field_nobody_touched():
    fresh = {1: ticket(1, T1, type="Incident")}  # an agent changed the type only
    kept, skipped = run_recheck([change(1, "group", "Billing")], fresh=fresh)
    assert [c.field for c in kept] == ["group"] and skipped == []


def test_a_default_on_a_ticket_changed_since_the_snapshot_may_be_someones_choice_and_is_left_alone():
    """Priority Low at the snapshot and Low again on the re-read: an agent may have raised it and set
    it back to Low on purpose, which looks the same; only an unchanged ticket's Low is the default."""
    changes = [change(1, "priority", "High"), change(2, "priority", "High")]
    fresh = {1: ticket(1, T1, group_id=1)}  # changed since the snapshot; ticket 2 is unchanged
    snapshots = {1: ticket(1, group_id=1), 2: ticket(2, group_id=1)}
    kept, skipped = run_recheck(changes, fresh=fresh, snapshots=snapshots)
    assert [(s.change.ticket_id, s.reason_code) for s in skipped] == [(1, "agent_changed")]
    assert [c.ticket_id for c in kept] == [2]


def test_a_dependent_write_is_dropped_when_its_required_field_is_no_longer_written():
    changes = [
        change(1, "group", "Billing"),
        change(1, "priority", "High"),
        change(2, "group", "Billing"),
        change(2, "priority", "High"),
    ]
    # (no priority yet: a default left on a ticket changed since its snapshot is a case of its own)
    fresh = {
        1: ticket(1, T1, group_id=None, type="Question", priority=None),
        2: ticket(2, T1, group_id=2, priority=None),
    }
    snapshots = {1: ticket(1, priority=None), 2: ticket(2, priority=None)}
    kept, skipped = run_recheck(
        changes, fresh=fresh, done={change_key(1, "group", "Billing", "update")}, snapshots=snapshots
    )
    # ticket 1: group already written by an earlier attempt is dropped silently, yet the ticket shows no
    # group now, so priority must not go alone; ticket 2: the agent's group satisfies the requirement.
    assert {(s.change.ticket_id, s.change.field, s.reason_code) for s in skipped} == {
        (1, "priority", "requires_unmet"),
        (2, "group", "agent_changed"),
    }
    assert [(c.ticket_id, c.field) for c in kept] == [(2, "priority")]


def test_identical_change_sets_are_grouped_into_bulk_updates_of_at_most_100():
    changes = [change(t, "group", "Billing") for t in range(1, 206)]
    changes += [change(t, "priority", "High") for t in range(1, 4)]  # three tickets differ: group + priority
    changes += [change(900, "group", "Sales & <Ops>")]
    requests = plan_writes(changes, tag="ai-triaged", bulk=True, bulk_min_tickets=2)
    shapes = sorted((r.method, len(r.ticket_ids), tuple(sorted(r.data))) for r in requests)
    assert shapes == [
        ("bulk_update", 2, ("group", "tags")),
        ("bulk_update", 3, ("group", "priority", "tags")),
        ("bulk_update", 100, ("group", "tags")),
        ("bulk_update", 100, ("group", "tags")),
        ("update", 1, ("group", "tags")),
    ]
    assert all(r.data["tags"] == ["ai-triaged"] for r in requests)
    assert sum(len(r.changes) for r in requests) == len(changes)
    assert {r.method for r in plan_writes(changes, tag=None, bulk=False, bulk_min_tickets=2)} == {"update"}


def test_a_note_lists_each_suggestion_with_its_confidence_html_escaped():
    notes = plan_notes(
        [change(7, "group", "Sales & <Ops>", 0.81), change(7, "priority", "High", 0.66)], specs=SPECS
    )
    assert len(notes) == 1 and notes[0].method == "note"
    body = notes[0].data["body"]
    assert "Group: <b>Sales &amp; &lt;Ops&gt;</b> (81% confident)" in body
    assert "Priority: <b>High</b> (66% confident)" in body and "<Ops>" not in body
    assert body == note_body(list(notes[0].changes), SPECS)


def test_a_ticket_the_re_read_could_not_parse_is_not_written():
    kept, skipped = recheck(
        [change(1, "group", "Billing")],
        method="update",
        done=set(),
        pending=set(),
        unreadable={1},
        snapshots={1: ticket(1)},
        fresh={},
        specs=SPECS,
        rules=RULES,
    )
    assert kept == [] and [s.reason_code for s in skipped] == ["unreadable"]
