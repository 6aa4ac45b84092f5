"""``triage deployments``: prefect.yaml's deployments once per helpdesk of a list, each running with its own
account's config and API-key block, and a list or config that would mix accounts refused (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from triage.cli import app
from triage.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = {"acme": "freshdesk-acme", "globex": "freshdesk-globex"}


@pytest.fixture
def listed(tmp_path, monkeypatch) -> Path:
    """Two accounts' configs and their list, in a checkout-like folder (paths relative to it)."""
    monkeypatch.chdir(tmp_path)
    Path("accounts").mkdir()
    for name in ACCOUNTS:
        Path(f"accounts/{name}.yml").write_text(
            f"ticket_system:\n  account: {name}\n  freshdesk_domain: {name}\npipeline:\n  mode: apply\n"
        )
    entries = [{"name": n, "config": f"accounts/{n}.yml", "api_key_block": b} for n, b in ACCOUNTS.items()]
    Path("accounts.yml").write_text(yaml.safe_dump({"accounts": entries}))
    return Path("accounts.yml")


def generate(*args: str):
    return CliRunner().invoke(app, ["deployments", *args, "--template", str(ROOT / "prefect.yaml")])


def test_every_deployment_once_per_account_with_that_accounts_config_and_key(listed):
    result = generate(str(listed))
    assert result.exit_code == 0, result.output
    assert "wrote 10 deployments for 2 account(s) to prefect.accounts.yaml" in result.output
    template = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    generated = yaml.safe_load(Path("prefect.accounts.yaml").read_text())
    assert generated["pull"] == template["pull"] and "definitions" not in generated
    by_name = {d["name"]: d for d in generated["deployments"]}
    assert sorted(by_name) == sorted(f"{d['name']}-{a}" for d in template["deployments"] for a in ACCOUNTS)
    for base in template["deployments"]:
        for account, block in ACCOUNTS.items():
            deployment = by_name[f"{base['name']}-{account}"]
            env = deployment["work_pool"]["job_variables"]["env"]
            assert env == {
                "TRIAGE_CONFIG": f"accounts/{account}.yml",
                "FRESHDESK_API_KEY_SECRET_BLOCK": block,
                "FRESHDESK_API_KEY": "",  # a key in the worker's own environment never serves an account
            }
            assert load_settings(env["TRIAGE_CONFIG"]).ticket_system.account == account
            assert f"account:{account}" in deployment["tags"]
            for key in ("entrypoint", "schedules", "concurrency_limit"):  # as prefect.yaml says
                assert deployment.get(key) == base.get(key), key
            assert deployment["work_pool"]["name"] == base["work_pool"]["name"]
    assert by_name["backfill-acme"]["parameters"] == {"params": {"deployment": "triage/hourly-acme"}}
    assert by_name["nightly-globex"]["parameters"] == {"params": {"days": 7, "retrain": True}}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda: Path("accounts/globex.yml").write_text("ticket_system:\n  account: acme\n"),
            "must be 'globex'",
        ),
        (lambda: Path("accounts/acme.yml").unlink(), "config file not found: accounts/acme.yml"),
        (
            lambda: Path("accounts/acme.yml").write_text(
                "ticket_system:\n  account: acme\npipeline:\n  predict_deployment: predict/predict\n"
            ),
            "pipeline.predict_deployment must be 'predict/predict-acme'",
        ),
        (
            lambda: Path("accounts.yml").write_text(
                "accounts:\n- {name: acme, config: accounts/acme.yml, api_key_block: a}\n"
                "- {name: acme, config: accounts/globex.yml, api_key_block: b}\n"
            ),
            "account names must be unique: acme",
        ),
        (
            lambda: Path("accounts.yml").write_text(
                "accounts:\n- {name: Acme/1, config: a.yml, api_key_block: a}\n"
            ),
            "accounts.0.name",
        ),
    ],
)
def test_a_list_or_config_that_would_mix_accounts_is_refused(listed, change, expected):
    change()
    result = generate(str(listed))
    assert result.exit_code == 2 and expected in result.output, result.output
    assert not Path("prefect.accounts.yaml").exists()
