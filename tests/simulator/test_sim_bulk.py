"""``POST /tickets/bulk_update`` and ``GET /jobs/{id}``: asynchronous, tags appended, partial failures."""

from __future__ import annotations

import httpx
import pytest

from triage.simulator import Simulator, SimulatorConfig, run_simulator

#: Jobs run this long after they are queued, on the simulator's clock, which the tests move on.
BULK_DELAY = 60.0


@pytest.fixture
def fast_sim():
    config = SimulatorConfig(tickets=200, open_tickets=20, seed=11, bulk_delay_seconds=BULK_DELAY)
    with run_simulator(config) as sim:
        yield sim


@pytest.fixture
def fast_client(fast_sim):
    with httpx.Client(base_url=fast_sim.base_url, auth=(fast_sim.api_key, "X")) as client:
        yield client


def finish_job(sim: Simulator, client: httpx.Client, href: str) -> dict:
    """Move the simulator's clock past the job's delay and read the finished job."""
    sim.advance_clock(BULK_DELAY)
    job = client.get(href).json()
    assert job["status"] != "IN PROGRESS"
    return job


def test_bulk_update_is_applied_later_and_appends_tags(fast_sim, fast_client):
    ids = sorted(fast_sim.truth())[:3]
    fast_sim.agent_edit(ids[0], tags=["vip"])
    response = fast_client.post(
        "/tickets/bulk_update",
        json={
            "bulk_action": {
                "ids": ids,
                "properties": {"priority": 3, "tags": ["ai-triaged"], "custom_fields": {"cf_product": "api"}},
            }
        },
    )
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"job_id", "href"} and body["href"] == f"{fast_sim.base_url}/jobs/{body['job_id']}"
    running = fast_client.get(body["href"]).json()
    assert running == {"id": body["job_id"], "status": "IN PROGRESS"}
    assert fast_client.get(f"/tickets/{ids[0]}").json()["priority"] == 1  # not applied yet
    job = finish_job(fast_sim, fast_client, body["href"])
    assert job["status"] == "SUCCESS"
    assert job["data"] == [{"id": i, "success": True} for i in ids]
    first = fast_client.get(f"/tickets/{ids[0]}").json()
    assert first["tags"] == ["vip", "ai-triaged"]  # appended, unlike PUT
    assert first["priority"] == 3 and first["custom_fields"]["cf_product"] == "API"
    bulk_changes = [c for c in fast_sim.changes if c.source == "bulk"]
    assert {c.ticket_id for c in bulk_changes} == set(ids) and {c.job_id for c in bulk_changes} == {
        body["job_id"]
    }


def test_per_ticket_failures_make_a_partial_job(fast_sim, fast_client):
    good = min(fast_sim.truth())
    spam = next(t.id for t in fast_sim.store.tickets.values() if t.spam or t.deleted)
    response = fast_client.post(
        "/tickets/bulk_update",
        json={"bulk_action": {"ids": [good, spam, 999999], "properties": {"priority": 2}}},
    )
    job = finish_job(fast_sim, fast_client, response.json()["href"])
    assert job["status"] == "PARTIAL"
    outcome = {item["id"]: item["success"] for item in job["data"]}
    assert outcome == {good: True, spam: False, 999999: False}
    assert fast_sim.ticket(good)["priority"] == 2
    failed = fast_client.post(
        "/tickets/bulk_update", json={"bulk_action": {"ids": [999998], "properties": {"priority": 2}}}
    )
    assert finish_job(fast_sim, fast_client, failed.json()["href"])["status"] == "FAILED"


def test_a_reply_is_added_and_bumps_updated_at(fast_sim, fast_client):
    tid = min(fast_sim.truth())
    before = fast_sim.ticket(tid)["updated_at"]
    response = fast_client.post(
        "/tickets/bulk_update", json={"bulk_action": {"ids": [tid], "reply": {"body": "We are on it"}}}
    )
    finish_job(fast_sim, fast_client, response.json()["href"])
    conversations = fast_client.get(f"/tickets/{tid}/conversations").json()
    assert conversations[-1]["body_text"] == "We are on it" and conversations[-1]["private"] is False
    assert fast_sim.ticket(tid)["updated_at"] > before


def test_invalid_bulk_requests_are_rejected_at_once(fast_client):
    too_many = fast_client.post(
        "/tickets/bulk_update",
        json={"bulk_action": {"ids": list(range(1, 102)), "properties": {"priority": 2}}},
    )
    assert too_many.status_code == 400 and too_many.json()["errors"][0]["field"] == "ids"
    neither = fast_client.post("/tickets/bulk_update", json={"bulk_action": {"ids": [1]}})
    assert neither.json()["errors"] == [
        {
            "field": "request",
            "message": "Please fill at least 1 of properties, reply fields",
            "code": "missing_field",
        }
    ]
    unwrapped = fast_client.post("/tickets/bulk_update", json={"ids": [1], "properties": {"priority": 2}})
    fields = {e["field"] for e in unwrapped.json()["errors"]}
    assert fields == {"ids", "properties", "bulk_action"}
    bad_value = fast_client.post(
        "/tickets/bulk_update", json={"bulk_action": {"ids": [1], "properties": {"priority": "2"}}}
    )
    assert bad_value.json()["errors"][0]["code"] == "datatype_mismatch"
    assert fast_client.get("/jobs/doesnotexist").status_code == 404
