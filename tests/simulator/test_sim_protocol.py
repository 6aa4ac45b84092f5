"""Transport-level behaviour: Basic auth, the headers on every answer, unknown routes and methods."""

from __future__ import annotations

import uuid

import httpx
import pytest

from triage.simulator import SimulatorConfig, run_simulator, run_simulator_async

INVALID_CREDENTIALS = {
    "code": "invalid_credentials",
    "message": "You have to be logged in to perform this action.",
}


@pytest.mark.parametrize(
    "auth",
    [None, ("wrong-key", "X"), ("", "test-key-123")],
    ids=["no-auth", "wrong-key", "key-as-password"],
)
def test_bad_credentials_get_401_with_freshdesks_body(sim, auth):
    response = httpx.get(f"{sim.base_url}/tickets", auth=auth)
    assert response.status_code == 401
    assert response.json() == INVALID_CREDENTIALS


def test_any_password_is_accepted(sim):
    for password in ("X", "", "unused_with_api_key"):
        assert httpx.get(f"{sim.base_url}/agents/me", auth=(sim.api_key, password)).status_code == 200


def test_restricted_key_is_denied_except_agents_me():
    config = SimulatorConfig(tickets=50, open_tickets=5, restricted_api_keys=("limited-key",))
    with run_simulator(config) as sim:
        auth = ("limited-key", "X")
        denied = httpx.get(f"{sim.base_url}/tickets", auth=auth)
        assert denied.status_code == 403
        assert denied.json() == {
            "code": "access_denied",
            "message": "You are not authorized to perform this action.",
        }
        assert httpx.put(f"{sim.base_url}/tickets/1", json={"priority": 2}, auth=auth).status_code == 403
        assert httpx.get(f"{sim.base_url}/agents/me", auth=auth).status_code == 200


def test_every_answer_carries_freshdesks_headers(sim, client):
    for response in (
        client.get("/tickets"),
        client.get("/tickets/999999"),
        client.put("/tickets/1", json={"x": 1}),
    ):
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        assert response.headers["x-freshdesk-api-version"] == "latest=v2; requested=v2"
        uuid.UUID(response.headers["x-request-id"])
        assert int(response.headers["x-ratelimit-total"]) > 0
        assert "x-ratelimit-remaining" in response.headers
        assert response.headers["x-ratelimit-used-currentrequest"] == "1"
    ids = {client.get("/agents/me").headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3


def test_unknown_ticket_and_route_are_404_with_empty_body(client):
    for path in ("/tickets/999999", "/no_such_thing", "/tickets/1/nonsense"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.content == b""


def test_wrong_method_is_405_with_allow(client):
    response = client.delete("/tickets/1")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, PUT"
    assert response.json() == {
        "message": "DELETE method is not allowed. It should be one of these method(s): GET, PUT"
    }


def test_metadata_endpoints(sim, client):
    fields = client.get("/ticket_fields", params={"page": 2, "per_page": 1}).json()  # never paginated
    by_name = {f["name"]: f for f in fields}
    assert by_name["ticket_type"]["choices"] == [
        "Question",
        "Incident",
        "Problem",
        "Feature Request",
        "Refund",
    ]
    assert by_name["priority"]["choices"] == {"Low": 1, "Medium": 2, "High": 3, "Urgent": 4}
    assert by_name["status"]["choices"]["6"] == ["Waiting on Customer", "Awaiting your Reply"]
    assert by_name["status"]["choices"]["7"][0] == "Waiting on Third Party"
    assert "Accounts &amp; Access" in by_name["group"]["choices"]  # HTML-escaped, as Freshdesk does
    assert by_name["cf_product"]["type"] == "custom_dropdown"
    assert by_name["cf_product"]["choices"] == ["Web App", "Mobile App", "POS Terminal", "Analytics", "API"]
    only_status = client.get("/ticket_fields", params={"type": "default_status"}).json()
    assert [f["name"] for f in only_status] == ["status"]
    assert client.get("/ticket_fields", params={"type": "bogus"}).status_code == 400

    groups = client.get("/groups", params={"per_page": 5})
    assert len(groups.json()) == 5
    assert 'page=2>; rel="next"' in groups.headers["link"]
    rest = client.get("/groups", params={"per_page": 5, "page": 2})
    assert len(rest.json()) == 2 and "link" not in rest.headers
    assert {g["name"] for g in groups.json() + rest.json()} == set(sim.labels()["group"])
    assert client.get("/groups", params={"per_page": 101}).json()["errors"][0]["message"] == (
        "It should be a Positive Integer less than or equal to 100"
    )
    me = client.get("/agents/me").json()
    assert me["ticket_scope"] == 1 and me["id"] > 10**9
    agents = client.get("/agents", params={"per_page": 100}).json()
    assert me["id"] in {a["id"] for a in agents}


async def test_async_variant_serves_from_its_own_thread():
    async with run_simulator_async(tickets=30, open_tickets=3) as sim:
        async with httpx.AsyncClient(base_url=sim.base_url, auth=(sim.api_key, "X")) as client:
            response = await client.get("/tickets", params={"updated_since": "2000-01-01"})
        assert response.status_code == 200
        assert len(response.json()) == 30 - sim.stats()["tickets"]["spam"] - sim.stats()["tickets"]["deleted"]


def test_config_and_settings_are_not_both_accepted():
    with pytest.raises(TypeError), run_simulator(SimulatorConfig(tickets=10, open_tickets=1), tickets=5):
        pass
