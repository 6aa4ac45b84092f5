"""Per-window rate limits (headers, sub-limits, credits, Retry-After) and every injected fault kind."""

from __future__ import annotations

import time

import httpx
import pytest

from triage.simulator import FaultRule, RateLimits, SimulatorConfig, run_simulator

RATE_LIMITED = {"message": "You have exceeded the limit of requests per minute"}


@pytest.fixture
def limited():
    limits = RateLimits(total=12, tickets_list=3, ticket_update=2)
    # A window long enough that a slow machine's requests stay in one; a test that waits it out shortens it.
    config = SimulatorConfig(tickets=80, open_tickets=10, plan="custom", limits=limits, window_seconds=60)
    with run_simulator(config) as sim, httpx.Client(base_url=sim.base_url, auth=(sim.api_key, "X")) as client:
        yield sim, client


def test_list_sub_limit_then_429_without_ratelimit_headers_until_the_window_ends(limited):
    sim, client = limited
    sim.set_rate_limits(window_seconds=2.5)
    answers = [client.get("/tickets") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["11", "10", "9"]
    assert answers[0].headers["x-ratelimit-total"] == "12"
    refused = client.get("/tickets")
    assert refused.status_code == 429
    assert refused.json() == RATE_LIMITED
    assert 1 <= int(refused.headers["retry-after"]) <= 3
    assert not [h for h in refused.headers if h.startswith("x-ratelimit")]
    assert refused.headers["x-request-id"]
    assert client.get("/tickets/1").status_code == 200  # other calls still fit the total
    time.sleep(int(refused.headers["retry-after"]) + 0.05)
    assert client.get("/tickets").status_code == 200
    assert sim.stats()["by_status"]["429"] == 1


def test_update_sub_limit_counts_invalid_requests_too(limited):
    sim, client = limited
    tid = min(sim.truth())
    assert client.put(f"/tickets/{tid}", json={"priority": "high"}).status_code == 400
    assert client.put(f"/tickets/{tid}", json={"priority": 2}).status_code == 200
    refused = client.put(f"/tickets/{tid}", json={"priority": 3})
    assert refused.status_code == 429
    assert sim.ticket(tid)["priority"] == 2
    assert sim.writes[-1].status == 429


def test_include_credits_count_against_the_total(limited):
    sim, client = limited
    first = client.get("/tickets", params={"include": "description,stats,requester"})  # 7 credits
    assert first.headers["x-ratelimit-used-currentrequest"] == "7"
    assert first.headers["x-ratelimit-remaining"] == "5"
    assert (
        client.get("/tickets/1", params={"include": "stats,requester,company"}).headers[
            "x-ratelimit-remaining"
        ]
        == "1"
    )
    assert client.get("/tickets", params={"include": "description"}).status_code == 429  # 3 > 1 left
    assert client.get("/agents/me").headers["x-ratelimit-remaining"] == "0"
    unauthenticated = httpx.get(f"{sim.base_url}/agents/me")
    assert unauthenticated.status_code == 429  # the account's budget, whoever asks


def test_limits_change_at_run_time():
    with (
        run_simulator(tickets=40, open_tickets=4) as sim,
        httpx.Client(base_url=sim.base_url, auth=(sim.api_key, "X")) as client,
    ):
        assert client.get("/tickets").headers["x-ratelimit-total"] == "1000000"
        sim.set_rate_limits("growth", window_seconds=60)
        for _ in range(20):
            assert client.get("/tickets").status_code == 200
        assert client.get("/tickets").status_code == 429
        assert client.get("/agents/me").headers["x-ratelimit-total"] == "200"


def test_error_fault_answers_5xx_for_the_next_k_requests(sim, client):
    sim.faults.inject("error", next=2, status=503)
    first, second, third = (client.get("/tickets/1") for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (503, 503, 200)
    assert first.json() == {"message": "We're sorry, but something went wrong."}
    assert sim.faults.rules() == []  # spent


def test_every_nth_and_fractional_faults(sim, client):
    sim.faults.add(FaultRule("error", every=3, path="/tickets"))
    codes = [client.get("/tickets/1").status_code for _ in range(9)]
    assert codes == [200, 200, 500] * 3
    assert client.get("/agents/me").status_code == 200  # path filter
    sim.faults.clear()
    sim.faults.inject("error", rate=0.5)
    codes = [client.get("/agents/me").status_code for _ in range(60)]
    assert 10 < codes.count(500) < 50


def test_dropped_connection_before_processing_changes_nothing(sim, client):
    tid = min(sim.truth())
    sim.faults.inject("drop", next=1, method="PUT")
    with pytest.raises(httpx.RemoteProtocolError):
        client.put(f"/tickets/{tid}", json={"priority": 4})
    assert sim.ticket(tid)["priority"] == 1
    assert sim.writes[-1].dropped and sim.writes[-1].status == 0
    assert client.put(f"/tickets/{tid}", json={"priority": 4}).status_code == 200
    assert sim.stats()["by_status"]["dropped"] == 1


def test_dropped_connection_after_processing_applies_the_write(sim, client):
    tid = min(sim.truth())
    sim.faults.inject("drop", next=1, after=True)
    with pytest.raises(httpx.RemoteProtocolError):
        client.put(f"/tickets/{tid}", json={"priority": 4})
    assert sim.ticket(tid)["priority"] == 4
    assert sim.writes[-1].dropped and sim.writes[-1].status == 200


def test_error_after_processing_applies_the_write_then_answers_5xx(sim, client):
    """A gateway's 502/504 after Freshdesk acted: the write took effect, its answer is an error."""
    tid = min(sim.truth())
    sim.faults.inject("error", next=1, status=504, after=True, method="PUT")
    assert client.put(f"/tickets/{tid}", json={"priority": 4}).status_code == 504
    assert sim.ticket(tid)["priority"] == 4
    assert sim.writes[-1].status == 504
    sim.faults.inject("error", next=1, status=502, after=True, path="/bulk_update")
    other = sorted(sim.truth())[1]
    posted = client.post(
        "/tickets/bulk_update", json={"bulk_action": {"ids": [other], "properties": {"priority": 3}}}
    )
    assert posted.status_code == 502 and len(sim.store.jobs) == 1  # the job exists all the same


def test_malformed_body_is_truncated_json(sim, client):
    sim.faults.inject("malformed", next=1)
    broken = client.get("/tickets")
    assert broken.status_code == 200 and broken.headers["content-type"].startswith("application/json")
    with pytest.raises(ValueError):
        broken.json()
    assert isinstance(client.get("/tickets").json(), list)


def test_429_storm_then_recovery(sim, client):
    sim.faults.inject("storm", next=3, retry_after=7)
    storm = [client.get("/tickets") for _ in range(3)]
    assert all(r.status_code == 429 and r.headers["retry-after"] == "7" for r in storm)
    assert all("x-ratelimit-remaining" not in r.headers for r in storm)
    assert client.get("/tickets").status_code == 200


def test_latency_fault_delays_the_answer(sim, client):
    sim.faults.inject("latency", seconds=0.3, next=1)
    started = time.monotonic()
    assert client.get("/agents/me").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_faults_from_the_config_and_bad_rules():
    config = SimulatorConfig(tickets=20, open_tickets=2, faults=(FaultRule("error", next=1, status=502),))
    with run_simulator(config) as sim:
        assert httpx.get(f"{sim.base_url}/agents/me", auth=(sim.api_key, "X")).status_code == 502
    with pytest.raises(ValueError):
        FaultRule("error", next=1, every=2)
    with pytest.raises(ValueError):
        FaultRule("error", status=404)
