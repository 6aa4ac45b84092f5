"""A small simulator per test (about 0.1 s to seed and start) and an authenticated httpx client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from triage.simulator import Simulator, SimulatorConfig, run_simulator


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with run_simulator(
        SimulatorConfig(tickets=400, open_tickets=40, seed=7, api_key="test-key-123")
    ) as running:
        yield running


@pytest.fixture
def client(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url, auth=(sim.api_key, "X"), timeout=10) as http:
        yield http
