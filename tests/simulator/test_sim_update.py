"""``PUT /tickets/{id}`` and notes: Freshdesk's validation, tag semantics, 405, ``updated_at``."""

from __future__ import annotations

import httpx
import pytest

from triage.simulator import SimulatorConfig, run_simulator


def open_ticket(sim) -> int:
    return min(sim.truth())


def a_group_id(client: httpx.Client, name: str = "Billing") -> int:
    fields = client.get("/ticket_fields", params={"type": "default_group"}).json()
    return fields[0]["choices"][name]


def test_a_valid_update_answers_200_with_the_full_ticket_and_bumps_updated_at(sim, client):
    tid = open_ticket(sim)
    before = client.get(f"/tickets/{tid}").json()
    group = a_group_id(client)
    response = client.put(
        f"/tickets/{tid}",
        json={
            "group_id": group,
            "priority": 3,
            "type": "incident",
            "custom_fields": {"cf_product": "mobile app"},
        },
    )
    assert response.status_code == 200
    ticket = response.json()
    assert ticket["group_id"] == group and ticket["priority"] == 3
    assert ticket["type"] == "Incident"  # case-insensitive match, stored in the account's spelling
    assert ticket["custom_fields"] == {"cf_product": "Mobile App", "cf_order_number": None}  # partial merge
    assert ticket["description_text"] == before["description_text"] and "attachments" in ticket
    assert ticket["updated_at"] > before["updated_at"]
    assert client.get(f"/tickets/{tid}").json() == ticket
    change = sim.changes[-1]
    assert change.source == "api" and change.ticket_id == tid
    assert change.changes["priority"] == (1, 3)
    assert change.request_id == response.headers["x-request-id"]


def test_a_no_op_update_does_not_bump_updated_at(sim, client):
    tid = open_ticket(sim)
    before = client.get(f"/tickets/{tid}").json()
    again = client.put(f"/tickets/{tid}", json={"priority": before["priority"]})
    assert again.status_code == 200
    assert again.json()["updated_at"] == before["updated_at"]


def test_all_errors_of_one_request_come_in_one_400_and_nothing_is_applied(sim, client):
    tid = open_ticket(sim)
    before = client.get(f"/tickets/{tid}").json()
    response = client.put(
        f"/tickets/{tid}",
        json={
            "group_id": 1,
            "priority": "3",
            "status": 9,
            "priorty": 2,
            "type": "Complaint",
            "responder_id": "12",
            "tags": ["fine", "x" * 33],
            "custom_fields": {"cf_product": "Toaster", "cf_colour": "red", "cf_order_number": 42},
        },
    )
    assert response.status_code == 400
    errors = {e["field"]: e for e in response.json()["errors"]}
    assert errors["group_id"] == {
        "field": "group_id",
        "message": "There is no group matching the given group_id",
        "code": "invalid_value",
    }
    assert errors["priority"] == {
        "field": "priority",
        "message": "Value set is of type String.It should be one of these values: '1,2,3,4'",
        "code": "datatype_mismatch",
    }
    assert errors["status"]["message"] == "It should be one of these values: '2,3,4,5,6,7'"
    assert errors["priorty"] == {
        "field": "priorty",
        "message": "Unexpected/invalid field in request",
        "code": "invalid_field",
    }
    assert (
        errors["type"]["message"]
        == "It should be one of these values: 'Question,Incident,Problem,Feature Request,Refund'"
    )
    assert errors["responder_id"] == {
        "field": "responder_id",
        "message": "Value set is of type String.It should be a/an Positive Integer",
        "code": "datatype_mismatch",
    }
    assert errors["tags"]["message"] == "It should only contain elements that have maximum of 32 characters"
    assert (
        errors["custom_fields.cf_product"]["message"]
        == "It should be one of these values: 'Web App,Mobile App,POS Terminal,Analytics,API'"
    )
    assert errors["cf_colour"]["code"] == "invalid_field"  # unknown custom keys are named bare
    assert (
        errors["custom_fields.cf_order_number"]["message"]
        == "Value set is of type Integer.It should be a/an String"
    )
    assert len(errors) == 10
    assert client.get(f"/tickets/{tid}").json() == before


def test_request_level_errors(sim, client):
    tid = open_ticket(sim)
    url = f"/tickets/{tid}"
    form = client.put(
        url, content=b"priority=2", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert form.status_code == 415
    assert form.json() == {
        "code": "invalid_content_type",
        "message": "Content-Type header is set to application/x-www-form-urlencoded. It should be set to application/json",
    }
    broken = client.put(url, content=b'{"priority": ', headers={"Content-Type": "application/json"})
    assert broken.status_code == 400
    assert broken.json() == {"code": "invalid_json", "message": "Request body has invalid json format"}
    nothing = client.put(url, json={})
    assert nothing.status_code == 400
    assert nothing.json() == {
        "code": "missing_params",
        "message": "Your update call does not have any parameter. Atleast one parameter is required.",
    }
    assert client.put("/tickets/999999", json={"priority": 2}).status_code == 404
    assert (
        client.put(url, params={"force": "yes"}, json={"priority": 2}).json()["errors"][0]["field"] == "force"
    )


def test_tags_replace_the_whole_list(sim, client):
    tid = open_ticket(sim)
    assert client.put(f"/tickets/{tid}", json={"tags": ["a", "b"]}).json()["tags"] == ["a", "b"]
    assert client.put(f"/tickets/{tid}", json={"tags": ["c"]}).json()["tags"] == ["c"]
    assert client.put(f"/tickets/{tid}", json={"tags": []}).json()["tags"] == []
    comma = client.put(f"/tickets/{tid}", json={"tags": ["a,b"]}).json()["errors"][0]
    assert comma["message"] == "It should not have strings containing the special characters: ','"
    not_a_list = client.put(f"/tickets/{tid}", json={"tags": "a"}).json()["errors"][0]
    assert not_a_list == {
        "field": "tags",
        "message": "Value set is of type String.It should be a/an Array",
        "code": "datatype_mismatch",
    }


def test_existence_is_checked_only_when_the_value_changes(sim, client):
    tid = open_ticket(sim)
    group = a_group_id(client, "Sales")
    client.put(f"/tickets/{tid}", json={"group_id": group})
    del sim.store.account.groups[group]  # the group is deleted after the ticket got it
    assert client.put(f"/tickets/{tid}", json={"group_id": group, "priority": 2}).status_code == 200
    other = sorted(sim.truth())[1]
    assert client.put(f"/tickets/{other}", json={"group_id": group}).status_code == 400


@pytest.mark.parametrize("flag", ["spam", "deleted"])
def test_spam_and_deleted_tickets_answer_405_but_stay_viewable(sim, client, flag):
    tid = next(t.id for t in sim.store.tickets.values() if getattr(t, flag))
    response = client.put(f"/tickets/{tid}", json={"priority": 2})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert response.json() == {
        "message": "PUT method is not allowed. It should be one of these method(s): GET"
    }
    view = client.get(f"/tickets/{tid}")
    assert view.status_code == 200 and view.json()["spam" if flag == "spam" else "deleted"] is True
    assert sim.writes[-1].status == 405


def test_required_fields_are_checked_on_every_update_unless_not_enforced():
    with run_simulator(
        SimulatorConfig(tickets=60, open_tickets=10, required_for_agents=("cf_product", "type"))
    ) as sim:
        client = httpx.Client(base_url=sim.base_url, auth=(sim.api_key, "X"))
        tid = min(sim.truth())
        response = client.put(f"/tickets/{tid}", json={"priority": 2})
        assert response.status_code == 400
        assert response.json()["errors"] == [
            {
                "field": "custom_fields.cf_product",
                "message": "It should be one of these values: 'Web App,Mobile App,POS Terminal,Analytics,API'",
                "code": "missing_field",
            },
            {
                "field": "type",
                "message": "It should be one of these values: 'Question,Incident,Problem,Feature Request,Refund'",
                "code": "missing_field",
            },
        ]
        relaxed = client.put(f"/tickets/{tid}", params={"enforce_mandatory": "false"}, json={"priority": 2})
        assert relaxed.status_code == 200 and relaxed.json()["priority"] == 2
        complete = client.put(
            f"/tickets/{tid}",
            json={"priority": 3, "type": "Question", "custom_fields": {"cf_product": "API"}},
        )
        assert complete.status_code == 200
        fields = {f["name"]: f for f in client.get("/ticket_fields").json()}
        assert fields["cf_product"]["required_for_agents"] is True
        assert fields["ticket_type"]["required_for_agents"] is True


def test_required_for_closure_applies_when_resolving():
    with run_simulator(SimulatorConfig(tickets=60, open_tickets=10, required_for_closure=("group",))) as sim:
        client = httpx.Client(base_url=sim.base_url, auth=(sim.api_key, "X"))
        tid = min(sim.truth())
        assert client.put(f"/tickets/{tid}", json={"priority": 2}).status_code == 200
        closing = client.put(f"/tickets/{tid}", json={"status": 4})
        assert closing.status_code == 400
        assert closing.json()["errors"][0] == {
            "field": "group_id",
            "message": "It should be a/an Positive Integer",
            "code": "missing_field",
        }


def test_private_note_bumps_updated_at_and_appears_in_conversations(sim, client):
    tid = open_ticket(sim)
    before = client.get(f"/tickets/{tid}").json()["updated_at"]
    note = client.post(
        f"/tickets/{tid}/notes", json={"body": "<p>Suggested: <b>Billing</b></p>", "private": True}
    )
    assert note.status_code == 201
    assert note.json()["private"] is True and note.json()["body_text"] == "Suggested: Billing"
    after = client.get(f"/tickets/{tid}", params={"include": "conversations"}).json()
    assert after["updated_at"] > before and after["updated_at"] == note.json()["created_at"]
    assert after["conversations"][0]["id"] == note.json()["id"]
    assert client.get(f"/tickets/{tid}/conversations").json()[0]["body_text"] == "Suggested: Billing"
    bad = client.post(f"/tickets/{tid}/notes", json={"private": "yes"})
    fields = {e["field"]: e["code"] for e in bad.json()["errors"]}
    assert fields == {"body": "missing_field", "private": "datatype_mismatch"}


def test_write_log_records_every_write_with_status_and_request_id(sim, client):
    tid = open_ticket(sim)
    ok = client.put(f"/tickets/{tid}", params={"enforce_mandatory": "false"}, json={"priority": 4})
    bad = client.put(f"/tickets/{tid}", json={"priority": 9})
    client.get(f"/tickets/{tid}")  # reads are not writes
    log = sim.writes
    assert [(w.method, w.path, w.status) for w in log] == [
        ("PUT", f"/api/v2/tickets/{tid}", 200),
        ("PUT", f"/api/v2/tickets/{tid}", 400),
    ]
    assert log[0].body == {"priority": 4} and log[0].query == "enforce_mandatory=false"
    assert [w.request_id for w in log] == [ok.headers["x-request-id"], bad.headers["x-request-id"]]
    assert log[0].time.endswith("Z")


def test_agent_edit_changes_the_ticket_outside_the_api(sim, client):
    tid = open_ticket(sim)
    before = client.get(f"/tickets/{tid}").json()
    diff = sim.agent_edit(tid, group="Shipping", priority="High", cf_product="API")
    after = client.get(f"/tickets/{tid}").json()
    assert after["group_id"] == a_group_id(client, "Shipping") and after["priority"] == 3
    assert after["custom_fields"]["cf_product"] == "API"
    assert after["updated_at"] > before["updated_at"]
    assert set(diff) == {"group_id", "priority", "custom_fields.cf_product"}
    assert sim.changes[-1].source == "agent" and sim.writes == []
    with pytest.raises(ValueError):
        sim.agent_edit(tid, group_name="x")
    with pytest.raises(ValueError, match="No Such Group"):
        sim.agent_edit(tid, group="No Such Group")
    with pytest.raises(KeyError):
        sim.agent_edit(10**9, priority=2)


def test_create_ticket_needs_a_requester_and_counts_as_a_create(sim, client):
    email = next(iter(sim.store.account.contacts.values())).email
    created = client.post(
        "/tickets", json={"email": email, "subject": "Hi", "description": "Printer on fire", "priority": 2}
    )
    assert created.status_code == 201
    ticket = created.json()
    assert created.headers["location"] == f"{sim.base_url}/tickets/{ticket['id']}"
    assert (ticket["status"], ticket["priority"], ticket["group_id"], ticket["description_text"]) == (
        2,
        2,
        None,
        "Printer on fire",
    )
    assert ticket["id"] == max(sim.ticket_ids())
    assert sim.stats()["rate_limit"]["calls"]["ticket_create"] == 1
    missing = client.post("/tickets", json={"subject": "Hi"})
    assert {e["field"]: e["code"] for e in missing.json()["errors"]} == {
        "requester_id": "missing_field",
        "description": "missing_field",
    }
