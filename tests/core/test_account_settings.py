"""Many helpdesks: ``ticket_system.account`` gives an account its own lake, model store and cached results
under the configured roots, resolved once in the settings, so no stage has to know about accounts."""

from pathlib import Path

import pytest

from triage.settings import ConfigError, Settings, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(text)
    return path


def test_an_account_puts_its_lake_store_and_results_under_the_roots(tmp_path):
    settings = load_settings(
        write(
            tmp_path,
            "ticket_system:\n  account: acme\n"
            "pipeline:\n  lake: s3://bucket/lake/\n  results: /shared/results\nmodel:\n  store: data/models\n",
        )
    )
    assert settings.pipeline.lake == "s3://bucket/lake/account=acme"
    assert settings.pipeline.results == "/shared/results/account=acme"
    assert settings.model.store == Path("data/models/account=acme")
    assert "account" not in settings.ticket_system.adapter_options()  # not the adapter's key


def test_the_account_comes_from_the_environment_too_and_resolves_once(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIAGE_TICKET_SYSTEM__ACCOUNT", "globex")
    settings = load_settings(write(tmp_path, "model:\n  store: s3://b/models\n"))
    assert settings.pipeline.lake == "data/lake/account=globex"
    assert settings.model.store == "s3://b/models/account=globex"
    assert settings.pipeline.results is None  # the default lives in the account's lake
    again = Settings.model_validate(settings.model_dump())  # a snapshot validated again (a worker's copy)
    assert again.pipeline.lake == settings.pipeline.lake and again.model.store == settings.model.store


def test_without_an_account_nothing_moves(tmp_path):
    settings = load_settings(write(tmp_path, "{}"))
    assert settings.ticket_system.account is None
    assert settings.pipeline.lake == "data/lake" and settings.model.store == Path("data/models")


@pytest.mark.parametrize("name", ["", "Acme", "a/b", "..", "acme=1", "a b", "-acme", "x" * 65])
def test_an_account_name_must_be_a_safe_path_segment(tmp_path, name):
    with pytest.raises(ConfigError, match=r"ticket_system\.account"):
        load_settings(write(tmp_path, f"ticket_system:\n  account: '{name}'\n"))
