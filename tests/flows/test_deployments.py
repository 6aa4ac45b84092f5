"""prefect.yaml: valid for `prefect deploy`, every entrypoint loads as a worker loads it, schedules safe
to run unattended. The deployments running on a real server and worker: test_server_deployments.py."""

from __future__ import annotations

import importlib.util
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prefect.cli.deploy._models import PrefectYamlModel

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def deployments() -> dict[str, dict]:
    data = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    PrefectYamlModel.model_validate(data)  # what `prefect deploy` parses
    return {d["name"]: d for d in data["deployments"]}


#: Loads each entrypoint in a fresh interpreter from the repository root, as a worker's flow-run process
#: does (Prefect puts the entrypoint's folder first on sys.path), and prints each flow's name.
LOADER = """
import json, sys
from prefect.flows import load_flow_from_entrypoint
print(json.dumps({e: load_flow_from_entrypoint(e).name for e in sys.argv[1:]}))
"""


def test_every_entrypoint_loads_as_a_worker_loads_it(deployments):
    entrypoints = [d["entrypoint"] for d in deployments.values()]
    done = subprocess.run(
        [sys.executable, "-c", LOADER, *entrypoints], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    names = json.loads(done.stdout.strip().splitlines()[-1])
    assert names == dict(zip(entrypoints, ["triage", "nightly", "backfill", "train", "predict"], strict=True))


def test_no_module_of_flows_shadows_an_installed_package():
    """A file entrypoint puts ``flows/`` on sys.path: a module there named like a package hides it."""
    modules = [m.name for m in pkgutil.iter_modules([str(ROOT / "flows")])]
    shadowing = [name for name in modules if importlib.util.find_spec(name) is not None]
    assert modules and not shadowing, shadowing


def test_every_deployment_validates_its_parameters_and_never_overlaps_itself(deployments):
    from prefect.flows import load_flow_from_entrypoint

    assert set(deployments) == {"hourly", "nightly", "backfill", "train", "predict"}
    for name, deployment in deployments.items():
        flow = load_flow_from_entrypoint(deployment["entrypoint"])
        if name not in ("backfill", "predict"):  # forms filled at run time (predict: by the triage flow)
            flow.validate_parameters(deployment.get("parameters") or {})
        assert deployment["concurrency_limit"]["limit"] == 1, name
        assert deployment["enforce_parameter_schema"] is True, name
        # The pool is named when deploying, the checkout by each worker (docs/operators.md, "Deployment");
        # predict has a pool of its own (a GPU machine's).
        pool = "TRIAGE_PREDICT_WORK_POOL" if name == "predict" else "TRIAGE_WORK_POOL"
        assert deployment["work_pool"]["name"] == "{{ $" + pool + " }}", name


def test_scheduled_deployments_have_a_timezone_and_never_overlap(deployments):
    for name in ("hourly", "nightly"):
        (schedule,) = deployments[name]["schedules"]
        assert schedule["timezone"] and schedule["cron"], name
    assert deployments["hourly"]["schedules"][0]["cron"] == "0 * * * *"
    assert deployments["hourly"]["concurrency_limit"]["collision_strategy"] == "ENQUEUE"
    assert "schedules" not in deployments["backfill"]


def test_parameter_forms_refuse_bad_dates_before_a_run_and_reversed_ranges_at_its_start():
    """The server checks a parameter's JSON schema (patterns, not formats) before it creates a run;
    ``end > start`` is checked by the parameters' own model when the flow starts."""
    from prefect.exceptions import ParameterTypeError
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools.validation import ValidationError, validate

    backfill = load_flow_from_entrypoint("flows/backfill.py:backfill_flow")
    schema = parameter_schema(backfill.fn).model_dump()
    good = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02"}
    validate({"params": good}, schema, raise_on_error=True)  # what the server runs
    with pytest.raises(ValidationError, match=r"params\.start"):
        validate({"params": {**good, "start": "not a date"}}, schema, raise_on_error=True)
    with pytest.raises(ParameterTypeError, match="end must be after start"):
        backfill.validate_parameters({"params": {"start": "2026-01-02", "end": "2026-01-01"}})
    with pytest.raises(ParameterTypeError, match="start"):
        backfill.validate_parameters({"params": {"end": "2026-01-02T00:00:00Z"}})
    hourly = load_flow_from_entrypoint("flows/incremental.py:triage_flow")
    with pytest.raises(ParameterTypeError, match="until must be after since"):
        hourly.validate_parameters({"params": {"since": "2026-01-02", "until": "2026-01-01"}})
