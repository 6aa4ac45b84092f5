"""Stage tests run the plain-Python stages against a live simulator (no Prefect, no model).

Predictions are written straight into the lake from the simulator's hidden truth (at chosen
probabilities), so decide and push are tested on known inputs without training a model.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from pipeline_helpers import write_config

from triage.adapters.registry import build_adapter
from triage.lake.runs import utcnow
from triage.simulator import SimulatorConfig, run_simulator
from triage.tasks.context import StageContext

THRESHOLDS = {"group": (0.8, 0.5), "priority": (0.8, 0.5), "type": (0.8, 0.5)}


@pytest.fixture
def sim():
    config = SimulatorConfig(tickets=240, open_tickets=24, seed=11, bulk_delay_seconds=0.05)
    with run_simulator(config) as simulator:
        yield simulator


@pytest.fixture
def config(tmp_path, sim, monkeypatch) -> Path:
    monkeypatch.setenv("FRESHDESK_API_KEY", sim.api_key)
    return write_config(tmp_path / "triage.yml", sim, tmp_path)


@pytest.fixture
def make_ctx(config) -> Callable[..., StageContext]:
    def make(run_id: str = "run-1", *, mode: str | None = None, days: float = 2.0, **extra) -> StageContext:
        end = utcnow().replace(microsecond=0) + timedelta(seconds=2)
        return StageContext(
            run_id=run_id,
            flow=extra.pop("flow", "triage"),
            window_start=end - timedelta(days=days),
            window_end=end,
            window_source="explicit",
            config_path=str(config),
            overrides={"pipeline": {"mode": mode}} if mode else {},
            **extra,
        )

    return make


@pytest.fixture
def adapter_for():
    def make(ctx: StageContext):
        return build_adapter(ctx.settings().ticket_system)

    return make
