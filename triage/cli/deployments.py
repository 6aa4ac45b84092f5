"""``triage deployments``: one set of Prefect deployments per helpdesk, generated from a list of accounts.

The list (YAML) names each account, its config.yml and the Prefect Secret block holding its API key::

    accounts:
      - {name: acme, config: accounts/acme.yml, api_key_block: freshdesk-acme}
      - {name: globex, config: accounts/globex.yml, api_key_block: freshdesk-globex}

Every deployment of ``prefect.yaml`` (the one home of schedules, concurrency and pools) is written once per
account, named ``<deployment>-<account>`` (``triage/hourly-acme``), with the account's config and key block in
its job variables' environment, so a worker runs each account's runs with that account's settings and key
alone. Each account's config must name the account (``ticket_system.account``): its lake, model store,
cached results and lease then live under ``account=<name>``, apart from every other account's.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from triage.cli.app import app
from triage.errors import ConfigError, validation_problems
from triage.settings import ACCOUNT_NAME, API_KEY_ENV, CONFIG_ENV, SECRET_BLOCK_ENV, load_settings

#: The deployment of the triage flow whose runs a backfill's batches are (BackfillParams.deployment).
HOURLY = "hourly"
BACKFILL = "backfill"
PREDICT = "predict"


class Account(BaseModel):
    """One helpdesk of the list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="The account's name, as its config's ticket_system.account says.")
    config: str = Field(description="Its config.yml, as the workers' checkout (TRIAGE_HOME) has it.")
    api_key_block: str = Field(description="The Prefect Secret block holding its Freshdesk API key.")

    @field_validator("name")
    @classmethod
    def _segment(cls, name: str) -> str:
        if not ACCOUNT_NAME.fullmatch(name):
            raise ValueError("1 to 64 lowercase letters, digits, '-' or '_', starting with a letter or digit")
        return name


class AccountList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accounts: list[Account] = Field(min_length=1)

    @field_validator("accounts")
    @classmethod
    def _unique(cls, accounts: list[Account]) -> list[Account]:
        names = [a.name for a in accounts]
        if doubled := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"account names must be unique: {', '.join(doubled)}")
        return accounts


def read_accounts(path: Path) -> list[Account]:
    """The accounts of the list at ``path``; :class:`ConfigError` naming each bad entry."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return AccountList.model_validate(data).accounts
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    except yaml.YAMLError:
        raise ConfigError(f"{path}: not valid YAML") from None
    except ValidationError as exc:
        problems = "\n".join(f"  {p}" for p in validation_problems(exc))
        raise ConfigError(f"invalid account list ({path}):\n{problems}") from None


def check_config(account: Account) -> None:
    """The account's config exists, is valid and names this account (and its own predict deployment)."""
    settings = load_settings(account.config)
    if settings.ticket_system.account != account.name:
        raise ConfigError(
            f"{account.config}: ticket_system.account must be {account.name!r} for account {account.name!r} "
            f"(it is {settings.ticket_system.account!r}): the account's lake and models live under it"
        )
    predict = settings.pipeline.predict_deployment
    own = f"{PREDICT}/{PREDICT}-{account.name}"
    if predict is not None and predict != own:
        raise ConfigError(
            f"{account.config}: pipeline.predict_deployment must be {own!r} (account {account.name!r})"
        )


def account_deployments(template: dict[str, Any], accounts: list[Account]) -> dict[str, Any]:
    """``template`` (prefect.yaml, parsed) with its deployments repeated per account (see the module)."""
    deployments = []
    for account in accounts:
        env = {
            CONFIG_ENV: account.config,
            SECRET_BLOCK_ENV: account.api_key_block,
            API_KEY_ENV: "",  # never a key the worker's own environment holds: the account's block alone
        }
        for base in template["deployments"]:
            deployment = copy.deepcopy(base)
            deployment["name"] = f"{base['name']}-{account.name}"
            deployment["tags"] = [*base.get("tags", []), f"account:{account.name}"]
            pool = deployment.setdefault("work_pool", {})
            pool["job_variables"] = {**(pool.get("job_variables") or {}), "env": env}
            if base["name"] == BACKFILL:  # the batches are child runs of this account's hourly deployment
                params = deployment.setdefault("parameters", {}).setdefault("params", {})
                params["deployment"] = f"triage/{HOURLY}-{account.name}"
            deployments.append(deployment)
    keep = {k: v for k, v in template.items() if k not in ("definitions", "deployments")}
    return {**keep, "deployments": deployments}


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


@app.command("deployments")
def deployments(
    accounts: Annotated[
        Path, typer.Argument(help="YAML list of accounts: name, config, api_key_block each.")
    ],
    template: Annotated[Path, typer.Option(help="The deployments to repeat per account.")] = Path(
        "prefect.yaml"
    ),
    output: Annotated[Path, typer.Option(help="Where to write them.")] = Path("prefect.accounts.yaml"),
) -> None:
    """Write one set of prefect.yaml's deployments per helpdesk (named <deployment>-<account>), each running
    with its account's config and API-key block; register them with `prefect deploy --all --prefect-file`."""
    listed = read_accounts(accounts)
    for account in listed:
        check_config(account)
    generated = account_deployments(yaml.safe_load(template.read_text(encoding="utf-8")), listed)
    header = (
        f"# Generated by `triage deployments {accounts}` from {template}: edit those, then generate again.\n"
        f"# Register: prefect --no-prompt deploy --all --prefect-file {output}\n"
    )
    output.write_text(header + yaml.dump(generated, Dumper=_NoAliases, sort_keys=False), encoding="utf-8")
    typer.echo(
        f"wrote {len(generated['deployments'])} deployments for {len(listed)} account(s) to {output}: "
        f"register them with `prefect --no-prompt deploy --all --prefect-file {output}`"
    )
