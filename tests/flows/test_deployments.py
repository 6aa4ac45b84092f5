"""prefect.yaml: valid for `prefect deploy`, every entrypoint a flow, schedules safe to run unattended."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from prefect import Flow
from prefect.cli.deploy._models import PrefectYamlModel

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def deployments() -> dict[str, dict]:
    data = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    PrefectYamlModel.model_validate(data)  # what `prefect deploy` parses
    return {d["name"]: d for d in data["deployments"]}


def load(entrypoint: str) -> Flow:
    module, name = entrypoint.split(":")
    return getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), name)


def test_every_deployment_points_at_a_flow_whose_parameters_validate(deployments):
    assert set(deployments) == {"hourly", "nightly", "backfill", "train"}
    for name, deployment in deployments.items():
        flow = load(deployment["entrypoint"])
        assert isinstance(flow, Flow), name
        if name != "backfill":  # the backfill form asks for its range at run time
            flow.validate_parameters(deployment.get("parameters") or {})
        assert deployment["concurrency_limit"]["limit"] == 1, name
        assert deployment["work_pool"]["name"] == "triage", name


def test_scheduled_deployments_have_a_timezone_and_never_overlap(deployments):
    for name in ("hourly", "nightly"):
        (schedule,) = deployments[name]["schedules"]
        assert schedule["timezone"] and schedule["cron"], name
    assert deployments["hourly"]["schedules"][0]["cron"] == "0 * * * *"
    assert deployments["hourly"]["concurrency_limit"]["collision_strategy"] == "ENQUEUE"
    assert "schedules" not in deployments["backfill"]


def test_backfill_needs_its_range():
    from pydantic import ValidationError

    from flows.backfill import BackfillParams

    flow = load("flows/backfill.py:backfill_flow")
    with pytest.raises(Exception, match="start"):
        flow.validate_parameters({"params": {"end": "2026-01-02T00:00:00Z"}})
    with pytest.raises(ValidationError, match="end must be after start"):
        BackfillParams(start="2026-01-02T00:00:00Z", end="2026-01-01T00:00:00Z")
