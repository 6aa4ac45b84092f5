"""Deployments per helpdesk on a real server: `triage deployments` generates them from a list of two accounts,
`prefect deploy --all --prefect-file` registers them, and a process worker runs each account's hourly run
with that account's config and its Secret block's key (not the key the worker's own environment holds),
into that account's lake, against that account's helpdesk only.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
import yaml
from flow_config import write_config
from prefect_server import Server, Worker, ok
from typer.testing import CliRunner

from triage.cli import app
from triage.lake import Lake
from triage.simulator import SimulatorConfig, run_simulator

pytestmark = [pytest.mark.slow, pytest.mark.deployment]
POOL = "accounts"  # a pool of their own on the shared deployment server
ACCOUNTS = ("acme", "globex")
TEMPLATE = Path(__file__).resolve().parents[2] / "prefect.yaml"


@pytest.fixture(scope="module")
def setup(trained, deployment_server, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """Two helpdesks, their configs (the session's model copied into each account's store), their keys in
    Secret blocks on the shared deployment server, and the generated deployments registered there on a pool
    of their own (their schedules paused: the test starts each run itself)."""
    server, folder = deployment_server, tmp_path_factory.mktemp("account-deployments")
    lake, store = folder / "lake", folder / "models"
    with (
        run_simulator(
            SimulatorConfig(tickets=150, open_tickets=15, seed=31, domain="acme", bulk_delay_seconds=0.05)
        ) as acme,
        run_simulator(
            SimulatorConfig(tickets=150, open_tickets=15, seed=32, domain="globex", bulk_delay_seconds=0.05)
        ) as globex,
    ):
        sims = {"acme": acme, "globex": globex}
        entries = []
        for name, sim in sims.items():
            shutil.copytree(trained["store"], store / f"account={name}")
            config = write_config(folder / f"{name}.yml", sim.base_url, lake=lake, store=store)
            data = yaml.safe_load(config.read_text())
            data["ticket_system"]["account"] = name
            config.write_text(yaml.safe_dump(data))
            save_secret(server, f"freshdesk-{name}", sim.api_key)
            entries.append({"name": name, "config": str(config), "api_key_block": f"freshdesk-{name}"})
        listed = folder / "accounts.yml"
        listed.write_text(yaml.safe_dump({"accounts": entries}))
        generated = folder / "prefect.accounts.yaml"
        result = CliRunner().invoke(
            app, ["deployments", str(listed), "--template", str(TEMPLATE), "--output", str(generated)]
        )
        assert result.exit_code == 0, result.output
        env = server.client_env(
            PREFECT_HOME=str(folder / "cli-home"), TRIAGE_WORK_POOL=POOL, TRIAGE_PREDICT_WORK_POOL=POOL
        )
        ok(server.prefect("work-pool", "create", POOL, "--type", "process", env=env))
        ok(server.prefect("deploy", "--all", "--prefect-file", str(generated), env=env))
        for account in ACCOUNTS:
            for name in (f"triage/hourly-{account}", f"nightly/nightly-{account}"):
                deployment = server.deployment(name)
                server.api.patch(f"/deployments/{deployment['id']}", json={"paused": True}).raise_for_status()
        yield {"server": server, "sims": sims, "lake": lake}


def save_secret(server: Server, name: str, value: str) -> None:
    """A Prefect Secret block on ``server``, saved as an operator does (the value through the environment)."""
    code = "import os; from prefect.blocks.system import Secret; Secret(value=os.environ['VALUE']).save(os.environ['NAME'])"
    env = server.client_env(PREFECT_HOME=str(server.folder / "cli-home"), VALUE=value, NAME=name)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120, capture_output=True)


def test_deploy_registers_every_accounts_deployments_with_its_config_and_key_block(setup):
    server = setup["server"]
    for account in ACCOUNTS:
        for flow, name in [("triage", "hourly"), ("nightly", "nightly"), ("backfill", "backfill"),
                           ("train", "train"), ("predict", "predict")]:  # fmt: skip
            deployment = server.deployment(f"{flow}/{name}-{account}")
            env = deployment["job_variables"]["env"]
            assert env["TRIAGE_CONFIG"].endswith(f"{account}.yml"), (name, env)
            assert (
                env["FRESHDESK_API_KEY_SECRET_BLOCK"] == f"freshdesk-{account}"
                and env["FRESHDESK_API_KEY"] == ""
            )
            assert deployment["work_pool_name"] == POOL and f"account:{account}" in deployment["tags"]
    assert server.deployment("backfill/backfill-acme")["parameters"] == {
        "params": {"deployment": "triage/hourly-acme"}
    }


def test_a_worker_runs_each_accounts_hourly_run_with_its_own_config_and_key(setup):
    server, sims, lake = setup["server"], setup["sims"], setup["lake"]
    # The worker's own key is nobody's: a run that used it instead of its block's would fail (401).
    with Worker(server, POOL, "accounts", FRESHDESK_API_KEY="sk-the-workers-own") as worker:
        runs = {account: server.run_deployment(f"triage/hourly-{account}").json() for account in ACCOUNTS}
        for account, run in runs.items():  # both at once, each in its own process
            done = server.wait(run["id"], worker=worker)
            assert done["state"]["type"] == "COMPLETED", (
                account,
                done["state"],
                worker.log.read_text()[-3000:],
            )
    assert sorted(p.name for p in lake.iterdir()) == ["account=acme", "account=globex"]
    for account, sim in sims.items():
        other = sims["globex" if account == "acme" else "acme"]
        tickets = (
            ds.dataset(str(lake / f"account={account}" / "tickets"), format="parquet").to_table().to_pylist()
        )
        assert tickets and {t["account"] for t in tickets} == {account}
        assert all(t["subject"] == sim.ticket(t["ticket_id"])["subject"] for t in tickets)
        audit = Lake(lake / f"account={account}").scan("audit").to_pylist()
        requests = {r["request_id"] for r in audit if r["request_id"]}
        assert requests <= {w.request_id for w in sim.writes}
        assert not requests & {w.request_id for w in other.writes}
