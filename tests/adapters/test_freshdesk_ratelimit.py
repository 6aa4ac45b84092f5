"""Pacing ahead of the limits: credits, sub-limits, the server's remaining budget, 429 pauses."""

from __future__ import annotations

import pytest
from freshdesk_fakes import FakeTime

from triage.adapters.freshdesk.config import TICKET_UPDATE, TICKETS_LIST, RateLimits
from triage.adapters.freshdesk.ratelimit import RateBudget


def budget(fake: FakeTime, total: int = 200, list_limit: int = 20, window: float = 60) -> RateBudget:
    limits = RateLimits(
        total=total, sublimits={TICKETS_LIST: list_limit, TICKET_UPDATE: 80}, window_seconds=window
    )
    return RateBudget(limits, clock=fake.clock, sleep=fake.sleep)


async def call(b: RateBudget, fake: FakeTime, credits: int, bucket: str | None = None, *, latency: float = 0.0,
               headers: dict | None = None) -> float:  # fmt: skip
    """One paced call that takes ``latency`` seconds; returns when it was sent."""
    reservation = await b.acquire(credits, bucket)
    sent = fake.now
    fake.now += latency
    b.settle(reservation, headers)
    return sent


async def test_the_list_sub_limit_allows_20_calls_per_window():
    fake = FakeTime()
    b = budget(fake)
    sent = [await call(b, fake, 3, TICKETS_LIST, latency=0.1) for _ in range(41)]
    # Never more than 20 list calls in any window of 60 s (counted from each call's completion).
    for i in range(len(sent) - 20):
        assert sent[i + 20] >= sent[i] + 0.1 + 60 - 1e-9
    # ...and no slower than that: the 21st call goes as soon as the 1st has left the window.
    assert sent[20] == pytest.approx(sent[0] + 0.1 + 60)


async def test_credits_limit_the_total_across_buckets():
    fake = FakeTime()
    b = budget(fake, total=10)
    for _ in range(3):
        await call(b, fake, 3)  # 9 credits used
    start = fake.now
    await call(b, fake, 3)  # would make 12 > 10: waits for the first call to leave the window
    assert fake.now - start == pytest.approx(60)


async def test_other_buckets_are_not_held_by_the_list_sub_limit():
    fake = FakeTime()
    b = budget(fake, list_limit=2)
    for _ in range(2):
        await call(b, fake, 3, TICKETS_LIST)
    await call(b, fake, 1, TICKET_UPDATE)
    assert fake.sleeps == []


async def test_the_server_remaining_budget_is_respected():
    """Other integrations spend the same budget: X-RateLimit-Remaining makes us wait."""
    fake = FakeTime()
    b = budget(fake)
    await call(b, fake, 1, headers={"x-ratelimit-remaining": "2", "x-ratelimit-total": "200"})
    await call(b, fake, 1)  # 1 left
    start = fake.now
    await call(b, fake, 3)  # 3 credits don't fit in what the server said remains
    assert fake.now - start == pytest.approx(60)


async def test_the_actual_cost_from_the_server_replaces_the_estimate():
    fake = FakeTime()
    b = budget(fake, total=10)
    await call(b, fake, 3, headers={"x-ratelimit-used-currentrequest": "1"})
    for _ in range(9):
        await call(b, fake, 1)
    assert fake.sleeps == []  # 1 + 9 = 10 credits fit


async def test_the_server_total_replaces_the_configured_one():
    fake = FakeTime()
    b = budget(fake, total=200)
    await call(b, fake, 1, headers={"X-RateLimit-Total": "50"})
    assert b.limits.total == 50


async def test_a_pause_holds_every_caller():
    fake = FakeTime()
    b = budget(fake)
    b.pause(7)
    await call(b, fake, 1)
    assert fake.sleeps == [7]


async def test_a_cost_above_the_total_still_runs():
    fake = FakeTime()
    b = budget(fake, total=2)
    await call(b, fake, 5)
    assert fake.sleeps == []
