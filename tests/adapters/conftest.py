"""Fixtures of the adapter tests: adapters on a fake clock, canned metadata responses."""

from __future__ import annotations

import random
from typing import Any

import pytest
from freshdesk_fakes import API_KEY, BASE, GROUPS, TICKET_FIELDS, FakeTime, headers

from triage.adapters.freshdesk import FreshdeskAdapter, FreshdeskConfig


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def make_adapter(fake_time):
    """Build adapters on the fake clock; all are closed after the test."""
    made: list[FreshdeskAdapter] = []

    def make(**options: Any) -> FreshdeskAdapter:
        config = FreshdeskConfig(freshdesk_domain="acme", freshdesk_api_key=API_KEY, **options)
        adapter = FreshdeskAdapter(config, clock=fake_time.clock, sleep=fake_time.sleep, rng=random.Random(7))
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        await adapter.aclose()


@pytest.fixture
def adapter(make_adapter) -> FreshdeskAdapter:
    return make_adapter()


@pytest.fixture
def metadata_mock(httpx_mock):
    """Serve /ticket_fields and /groups (reusable, optional)."""
    httpx_mock.add_response(
        url=f"{BASE}/ticket_fields", json=TICKET_FIELDS, headers=headers(), is_reusable=True, is_optional=True
    )
    httpx_mock.add_response(
        url=f"{BASE}/groups?per_page=100&page=1",
        json=GROUPS,
        headers=headers(),
        is_reusable=True,
        is_optional=True,
    )
    return httpx_mock
