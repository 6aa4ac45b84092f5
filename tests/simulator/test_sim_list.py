"""``GET /tickets``: validation, Freshdesk's implicit conditions, ordering, pagination, credits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from triage.simulator import SimulatorConfig, run_simulator

EVERYTHING = {"updated_since": "2000-01-01T00:00:00Z", "per_page": 100}


def read_all(client: httpx.Client, **params) -> list[dict]:
    rows, page = [], 1
    while True:
        response = client.get("/tickets", params={**EVERYTHING, **params, "page": page})
        assert response.status_code == 200, response.text
        rows += response.json()
        if "link" not in response.headers:
            return rows
        page += 1


def parse(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def test_default_window_hides_tickets_created_over_a_month_ago(sim, client):
    bare = []
    page = 1
    while True:
        response = client.get("/tickets", params={"page": page, "per_page": 100})
        bare += response.json()
        if "link" not in response.headers:
            break
        page += 1
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert bare and all(parse(t["created_at"]) > today - timedelta(days=31) for t in bare)
    everything = read_all(client)
    old = [t for t in everything if parse(t["created_at"]) < today - timedelta(days=32)]
    assert old, "the seed has tickets older than a month"
    assert {t["id"] for t in bare} < {t["id"] for t in everything}
    # requester_id lifts the window too
    requester = old[0]["requester_id"]
    mine = client.get("/tickets", params={"requester_id": requester, "per_page": 100}).json()
    assert old[0]["id"] in {t["id"] for t in mine}
    assert all(t["requester_id"] == requester for t in mine)


def test_spam_and_deleted_only_through_their_filters(sim, client):
    stored = sim.store.tickets.values()
    spam = {t.id for t in stored if t.spam and not t.deleted}
    deleted = {t.id for t in stored if t.deleted}
    assert spam and deleted
    listed = {t["id"] for t in read_all(client)}
    assert not listed & (spam | deleted)
    assert len(listed) == len(sim.store.tickets) - len(spam) - len(deleted)
    spam_rows = client.get("/tickets", params={"filter": "spam", "per_page": 100}).json()
    assert {t["id"] for t in spam_rows} == spam and all(t["spam"] for t in spam_rows)
    deleted_rows = client.get("/tickets", params={"filter": "deleted", "per_page": 100}).json()
    assert {t["id"] for t in deleted_rows} == deleted
    assert all(t["deleted"] is True for t in deleted_rows)
    assert all("deleted" not in t for t in spam_rows)


def test_updated_since_is_inclusive_and_ordering_is_respected(sim, client):
    rows = read_all(client, order_by="updated_at", order_type="asc")
    stamps = [t["updated_at"] for t in rows]
    assert stamps == sorted(stamps)
    pivot = rows[len(rows) // 2]
    since = client.get(
        "/tickets",
        params={
            **EVERYTHING,
            "updated_since": pivot["updated_at"],
            "order_by": "updated_at",
            "order_type": "asc",
        },
    )
    first = since.json()[0]
    assert first["updated_at"] == pivot["updated_at"]  # inclusive
    assert all(t["updated_at"] >= pivot["updated_at"] for t in since.json())
    # offsets are accepted and mean the same instant
    shifted = (parse(pivot["updated_at"]) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S+02:00")
    same = client.get(
        "/tickets",
        params={**EVERYTHING, "updated_since": shifted, "order_by": "updated_at", "order_type": "asc"},
    )
    assert same.json()[0]["updated_at"] == pivot["updated_at"]

    desc = read_all(client, order_by="created_at", order_type="desc")
    created = [(t["created_at"], t["id"]) for t in desc]
    assert created == sorted(created, reverse=True)
    by_priority = read_all(client, order_by="priority", order_type="asc")
    assert [t["priority"] for t in by_priority] == sorted(t["priority"] for t in by_priority)
    default = client.get("/tickets", params=EVERYTHING).json()  # created_at desc by default
    assert [t["id"] for t in default] == [t["id"] for t in desc[:100]]


def test_invalid_parameters_are_all_reported(client):
    response = client.get(
        "/tickets",
        params={
            "filter": "new_any_my_open",
            "order_by": "name",
            "order_type": "up",
            "include": "stats,foo",
            "per_page": 0,
            "company_name": "x",
        },
    )
    assert response.status_code == 400
    body = response.json()
    assert body["description"] == "Validation failed"
    errors = {e["field"]: e for e in body["errors"]}
    assert errors["filter"] == {
        "field": "filter",
        "message": "It should be one of these values: 'new_and_my_open,watching,spam,deleted'",
        "code": "invalid_value",
    }
    assert (
        errors["order_by"]["message"]
        == "It should be one of these values: 'due_by,created_at,updated_at,priority,status'"
    )
    assert errors["order_type"]["message"] == "It should be one of these values: 'asc,desc'"
    assert (
        errors["include"]["message"]
        == "It should be one of these values: 'requester, stats, company, description'"
    )
    assert errors["per_page"] == {
        "field": "per_page",
        "message": "It should be a Positive Integer less than or equal to 100",
        "code": "invalid_value",
    }
    assert errors["company_name"] == {
        "field": "company_name",
        "message": "Unexpected/invalid field in request",
        "code": "invalid_field",
    }
    assert client.get("/tickets", params={"per_page": 101}).status_code == 400
    assert (
        client.get("/tickets", params={"per_page": "abc"}).json()["errors"][0]["code"] == "datatype_mismatch"
    )
    bad_date = client.get("/tickets", params={"updated_since": "yesterday"}).json()["errors"][0]
    assert bad_date == {
        "field": "updated_since",
        "message": "It should be a valid date in the 'combined date and time ISO8601' format",
        "code": "invalid_value",
    }
    unknown = client.get("/tickets", params={"requester_id": 1}).json()["errors"][0]
    assert unknown["message"] == "There is no contact matching the given requester_id"


def test_page_beyond_300_has_the_exact_production_body(client):
    for page in (301, 0, -1):
        response = client.get("/tickets", params={"page": page})
        assert response.status_code == 400
        assert response.json() == {
            "description": "Validation failed",
            "errors": [
                {
                    "field": "page",
                    "message": "You cannot access tickets beyond the 300th page. Please provide a smaller page number.",
                    "code": "invalid_value",
                }
            ],
        }


def test_link_header_only_when_more_rows_and_page_300_links_to_301(sim, client):
    params = {
        "updated_since": "2000-01-01T00:00:00Z",
        "order_by": "updated_at",
        "order_type": "asc",
        "per_page": 1,
    }
    at_300 = client.get("/tickets", params={**params, "page": 300})
    assert len(at_300.json()) == 1
    link = at_300.headers["link"]
    # every original parameter echoed, unencoded, with page replaced
    assert link == (
        f"<{sim.base_url}/tickets?updated_since=2000-01-01T00:00:00Z&order_by=updated_at"
        f'&order_type=asc&per_page=1&page=301>; rel="next"'
    )
    total = len(read_all(client))
    last = client.get("/tickets", params={**EVERYTHING, "page": (total + 99) // 100})
    assert last.status_code == 200 and "link" not in last.headers and last.json()
    past_end = client.get("/tickets", params={**EVERYTHING, "page": (total + 99) // 100 + 1})
    assert past_end.json() == [] and "link" not in past_end.headers
    deleted = len(client.get("/tickets", params={"filter": "deleted", "per_page": 100}).json())
    exact = client.get("/tickets", params={"filter": "deleted", "per_page": deleted})
    assert len(exact.json()) == deleted and "link" not in exact.headers  # no trailing empty page


def test_description_and_includes_cost_credits(client):
    plain = client.get("/tickets", params={**EVERYTHING, "per_page": 5})
    assert "description" not in plain.json()[0] and "description_text" not in plain.json()[0]
    assert plain.headers["x-ratelimit-used-currentrequest"] == "1"
    rich = client.get(
        "/tickets", params={**EVERYTHING, "per_page": 5, "include": "description,requester,stats,company"}
    )
    assert rich.headers["x-ratelimit-used-currentrequest"] == "9"
    item = rich.json()[0]
    assert item["description_text"] and item["description"].startswith("<div>")
    assert set(item["requester"]) == {"id", "name", "email", "mobile", "phone"}
    assert "resolved_at" in item["stats"]
    show = client.get("/tickets/1", params={"include": "requester,stats"})
    assert show.headers["x-ratelimit-used-currentrequest"] == "3"
    assert "description_text" in show.json() and "attachments" in show.json()


def test_a_35000_ticket_account_is_read_in_full_through_the_page_cap():
    with run_simulator(SimulatorConfig(tickets=35_000, open_tickets=1000, seed=3)) as sim:
        visible = {t.id for t in sim.store.tickets.values() if not (t.spam or t.deleted)}
        with httpx.Client(base_url=sim.base_url, auth=(sim.api_key, "X")) as client:
            since, page, seen, hit_cap = "2000-01-01T00:00:00Z", 1, set(), False
            while True:
                response = client.get(
                    "/tickets",
                    params={
                        "updated_since": since,
                        "order_by": "updated_at",
                        "order_type": "asc",
                        "per_page": 100,
                        "page": page,
                    },
                )
                rows = response.json()
                seen |= {t["id"] for t in rows}
                if "link" not in response.headers:
                    break
                if page == 300:
                    assert "page=301" in response.headers["link"]
                    hit_cap = True
                    since, page = rows[-1]["updated_at"], 1
                else:
                    page += 1
    assert hit_cap
    assert seen == visible


def test_filters_by_requester_email_company_and_new_and_my_open(sim, client):
    stored = [t for t in sim.store.tickets.values() if not (t.spam or t.deleted)]
    contact = sim.store.account.contacts[stored[0].requester_id]
    by_email = client.get("/tickets", params={"email": contact.email, "per_page": 100}).json()
    assert {t["id"] for t in by_email} == {t.id for t in stored if t.requester_id == contact.id}
    company = next(t.company_id for t in stored if t.company_id)
    by_company = client.get("/tickets", params={"company_id": company, "per_page": 100}).json()
    assert by_company and all(t["company_id"] == company for t in by_company)
    new_and_mine = read_all(client, filter="new_and_my_open")
    assert {t["id"] for t in new_and_mine} == {
        t.id for t in stored if t.status == 2 and t.responder_id is None
    }
    assert client.get("/tickets", params={"filter": "watching"}).json() == []
    assert (
        client.get("/tickets", params={"email": "nobody@example.com"}).json()["errors"][0]["field"] == "email"
    )
