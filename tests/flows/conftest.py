"""Flow tests: one Prefect test harness, one simulator and one trained model for the whole session, and
one real Prefect server with the deployments for the tests that run them on workers.

The harness swaps Prefect's database and API for a temporary one; results and transaction records
go to a temporary folder too (else a test would see cached results of an earlier session). The
simulator is reset to its seed before each test, and each test gets its own lake, so tests are
independent while the model is trained only once.
"""

from __future__ import annotations

import os

import pytest
from flow_config import SIMULATOR, write_config
from prefect_server import GPU, POOL, deployed

from triage.simulator import run_simulator


def pytest_collection_modifyitems(items):
    """The tests on the shared deployment server run last, one after another: the server is up only then."""
    items.sort(key=lambda item: "deployment_server" in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_RESULTS_LOCAL_STORAGE_PATH,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    results = tmp_path_factory.mktemp("prefect-results")
    with (
        temporary_settings(
            {PREFECT_RESULTS_LOCAL_STORAGE_PATH: str(results), PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
        ),
        prefect_test_harness(server_startup_timeout=120),
    ):
        yield


@pytest.fixture(scope="session")
def session_sim():
    with run_simulator(SIMULATOR) as simulator:
        yield simulator


@pytest.fixture(scope="session")
def trained(prefect_harness, session_sim, tmp_path_factory):
    """The train flow run once: history extracted through the adapter, a model in a shared store."""
    from triage.flows.train import TrainParams, train_flow

    folder = tmp_path_factory.mktemp("train")
    config = write_config(
        folder / "triage.yml", session_sim.base_url, lake=folder / "lake", store=folder / "models"
    )
    previous = os.environ.get("FRESHDESK_API_KEY")
    os.environ["FRESHDESK_API_KEY"] = session_sim.api_key
    try:
        manifest = train_flow(TrainParams(config=str(config), days=400))
    finally:
        os.environ.pop("FRESHDESK_API_KEY", None) if previous is None else os.environ.update(
            FRESHDESK_API_KEY=previous
        )
    return {"manifest": manifest, "store": folder / "models", "lake": folder / "lake"}


@pytest.fixture
def world(trained, session_sim, tmp_path, monkeypatch):
    """A freshly seeded simulator, the session's model and an empty lake of this test's own."""
    session_sim.reset()
    monkeypatch.setenv("FRESHDESK_API_KEY", session_sim.api_key)
    config = write_config(
        tmp_path / "triage.yml", session_sim.base_url, lake=tmp_path / "lake", store=trained["store"]
    )
    return {"sim": session_sim, "config": config, "lake": tmp_path / "lake", "tmp": tmp_path}


@pytest.fixture(scope="session")
def deployment_server(tmp_path_factory):
    """`prefect server start` (SQLite), pools ``triage`` and ``gpu`` (one run at a time), `prefect deploy --all`,
    schedules paused. Shared by the worker tests: each brings its own simulator, lake and workers, and
    reads only the runs it started (and their child runs)."""
    with deployed(tmp_path_factory.mktemp("prefect-deployed"), POOL, GPU) as server:
        yield server
