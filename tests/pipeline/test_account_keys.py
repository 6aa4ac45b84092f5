"""Two accounts' runs in one process (``prefect serve``, a script): each run's adapter calls its own
helpdesk with the key of its own Secret block, held in its settings snapshot, never in os.environ."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from pipeline_helpers import write_config
from prefect.blocks.system import Secret

from triage.adapters.registry import build_adapter
from triage.flows.common import run_settings
from triage.flows.predict import PredictParams
from triage.settings import Settings
from triage.simulator import SimulatorConfig, run_simulator
from triage.tasks.context import StageContext
from triage.tasks.manifest import ExtractManifest

END = datetime(2026, 1, 2, tzinfo=UTC)


@pytest.fixture
def helpdesks():
    """Two helpdesks (accounts ``a`` and ``b``), each accepting only its own API key."""
    with (
        run_simulator(SimulatorConfig(tickets=20, open_tickets=2, seed=1)) as a,
        run_simulator(SimulatorConfig(tickets=20, open_tickets=2, seed=2)) as b,
    ):
        yield {"a": a, "b": b}


@pytest.fixture
def blocks(monkeypatch, helpdesks):
    """Secret blocks ``freshdesk-a`` and ``freshdesk-b`` holding each helpdesk's key; names loaded, in order."""
    values = {f"freshdesk-{name}": sim.api_key for name, sim in helpdesks.items()}
    loaded: list[str] = []

    class Loaded:
        def __init__(self, name: str) -> None:
            self.name = name

        def get(self) -> str:
            return values[self.name]

    def load(cls, name, *args, **kwargs):
        loaded.append(name)
        return Loaded(name)

    monkeypatch.setattr(Secret, "load", classmethod(load))
    return loaded


def account_config(tmp_path, sim, name: str):
    path = write_config(tmp_path / f"{name}.yml", sim, tmp_path / name)
    text = path.read_text().replace(
        "ticket_system:\n", f"ticket_system:\n  credentials_block: freshdesk-{name}\n"
    )
    path.write_text(text)
    return path


async def field_names(settings: Settings) -> set[str]:
    async with build_adapter(settings.ticket_system) as adapter:
        return set(await adapter.get_fields())


async def test_interleaved_accounts_call_their_helpdesks_with_their_own_keys(tmp_path, helpdesks, blocks):
    a = run_settings(str(account_config(tmp_path, helpdesks["a"], "a")))
    b = run_settings(str(account_config(tmp_path, helpdesks["b"], "b")))  # resolved after a, before a calls
    assert blocks == ["freshdesk-a", "freshdesk-b"]
    assert "FRESHDESK_API_KEY" not in os.environ
    # Each helpdesk refuses any other key (401): a call with the other account's key would raise.
    assert await field_names(a) and await field_names(b) and await field_names(a)
    for settings, name in ((a, "a"), (b, "b")):
        key = settings.ticket_system.adapter_options()["freshdesk_api_key"].get_secret_value()
        assert key == helpdesks[name].api_key
    assert "FRESHDESK_API_KEY" not in os.environ


def test_a_set_key_wins_over_the_block(tmp_path, helpdesks, blocks, monkeypatch):
    monkeypatch.setenv("FRESHDESK_API_KEY", helpdesks["a"].api_key)
    settings = run_settings(str(account_config(tmp_path, helpdesks["a"], "a")))
    assert blocks == []
    assert (
        settings.ticket_system.adapter_options()["freshdesk_api_key"].get_secret_value()
        == helpdesks["a"].api_key
    )


def test_the_block_can_be_named_in_the_environment(tmp_path, helpdesks, blocks, monkeypatch):
    monkeypatch.setenv("FRESHDESK_API_KEY_SECRET_BLOCK", "freshdesk-b")
    settings = run_settings(str(write_config(tmp_path / "b.yml", helpdesks["b"], tmp_path)))
    assert blocks == ["freshdesk-b"] and settings.ticket_system.credentials_block == "freshdesk-b"
    assert "FRESHDESK_API_KEY" not in os.environ


def test_the_block_key_is_in_no_dump_repr_or_predict_parameters(tmp_path, helpdesks, blocks):
    key = helpdesks["a"].api_key
    settings = run_settings(str(account_config(tmp_path, helpdesks["a"], "a")))
    ctx = StageContext(
        run_id="run-1",
        flow="triage",
        window_start=END - timedelta(days=1),
        window_end=END,
        window_source="explicit",
        config_path=str(tmp_path / "a.yml"),
    ).with_settings(settings)
    tickets = ExtractManifest(run_id="run-1", started_at=END, high_water_mark=END)
    renderings = (
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        repr(ctx),
        ctx.model_dump_json(),
        str(PredictParams(context=ctx, tickets=tickets).model_dump(mode="json")),  # run_deployment's
    )
    assert all(key not in text for text in renderings)
