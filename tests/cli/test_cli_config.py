"""Operator-facing CLI behaviour: invalid configuration fails at once, with the key named, exit 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from triage.cli import app

SECRET = "sk-cli-0123456789abcdef"


def write(tmp_path, text: str):
    path = tmp_path / "config.yml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        (
            "ticket_system:\n  freshdesk_domain: 'acme corp'\n",
            {"FRESHDESK_API_KEY": SECRET},
            "freshdesk_domain",
        ),
        (
            "ticket_system:\n  freshdesk_domian: acme\n",
            {"FRESHDESK_API_KEY": SECRET},
            "freshdesk_domian: unknown key",
        ),
        ("ticket_system:\n  adapter: zendesk\n", {"FRESHDESK_API_KEY": SECRET}, "unknown adapter 'zendesk'"),
        (
            "ticket_system:\n  freshdesk_domain: acme\n  freshdesk_api_key: 'a b'\n",
            {},
            "must not contain spaces",
        ),
        ("ticket_system:\n  plan: custom\n", {}, "rate_limit_total"),  # wrong beside a missing key
    ],
)
def test_config_command_reports_adapter_errors_without_a_traceback(
    tmp_path, monkeypatch, text, env, expected
):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["config", "--config", str(write(tmp_path, text))])
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output and SECRET not in result.output


def test_config_command_prints_the_settings_with_the_key_masked(tmp_path, monkeypatch):
    monkeypatch.setenv("FRESHDESK_API_KEY", SECRET)
    path = write(tmp_path, "ticket_system:\n  freshdesk_domain: acme\npipeline:\n  mode: suggest\n")
    result = CliRunner().invoke(app, ["config", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "mode: suggest" in result.output and "freshdesk_domain: acme" in result.output
    assert "ok for every command" in result.output
    assert SECRET not in result.output


@pytest.mark.parametrize(
    ("text", "env", "needs"),
    [
        ("ticket_system:\n  freshdesk_domain: acme\n", {}, "FRESHDESK_API_KEY"),
        ("{}\n", {"FRESHDESK_API_KEY": SECRET}, "ticket_system.freshdesk_domain (or base_url)"),
        (
            "ticket_system:\n  base_url: 'http://127.0.0.1:8765/api/v2'\n",
            {},
            "FRESHDESK_API_KEY\n",
        ),
        ("{}\n", {}, "ticket_system.freshdesk_domain (or base_url) and FRESHDESK_API_KEY"),
    ],
)
def test_a_training_only_config_is_valid_and_says_what_runs_need(tmp_path, monkeypatch, text, env, needs):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["config", "--config", str(write(tmp_path, text))])
    assert result.exit_code == 0, result.output
    assert "ok for train, evaluate and predict from files" in result.output
    assert f"run, backfill, retrain and nightly need {needs}" in result.output
    assert "Traceback" not in result.output and SECRET not in result.output


@pytest.mark.parametrize(
    "command", [["run"], ["retrain"], ["nightly"], ["backfill", "2026-01-01", "2026-01-02"]]
)
def test_flow_commands_check_the_adapter_settings_before_any_flow_starts(tmp_path, command):
    path = write(tmp_path, "ticket_system:\n  freshdesk_domain: acme\n")  # no API key anywhere
    result = CliRunner().invoke(app, [*command, "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert "ticket_system.freshdesk_api_key" in result.output and "FRESHDESK_API_KEY" in result.output


def test_a_secret_block_defers_the_key_check_to_the_flow(tmp_path, monkeypatch):
    from triage.cli.pipeline import validated_config

    monkeypatch.setenv("FRESHDESK_API_KEY_SECRET_BLOCK", "freshdesk-api-key")
    path = write(tmp_path, "ticket_system:\n  freshdesk_domain: acme\n")
    assert validated_config(path) == str(path)


@pytest.mark.parametrize(
    "url",
    [
        f"https://me:{SECRET}@acme.freshdesk.com/api/v2",
        f"https://{SECRET}:X@acme.freshdesk.com/api/v2",
        f"https://{SECRET}@acme.freshdesk.com/api/v2?x=1",
    ],
)
def test_a_base_url_with_credentials_is_refused_without_echoing_them(tmp_path, monkeypatch, url):
    monkeypatch.setenv("FRESHDESK_API_KEY", "sk-env-0123456789abcdef")
    result = CliRunner().invoke(
        app, ["config", "--config", str(write(tmp_path, f"ticket_system:\n  base_url: '{url}'\n"))]
    )
    assert result.exit_code == 2, result.output
    assert "ticket_system.base_url" in result.output and "credentials" in result.output
    assert SECRET not in result.output


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("http://acme.freshdesk.com/api/v2", True),
        ("http://10.0.0.5:8765/api/v2", True),
        ("http://127.0.0.1:8765/api/v2", False),
        ("http://localhost:8765/api/v2", False),
        ("http://[::1]:8765/api/v2", False),
        ("https://helpdesk.example.com/api/v2", False),
    ],
)
def test_plain_http_is_refused_except_on_loopback(tmp_path, monkeypatch, url, refused):
    monkeypatch.setenv("FRESHDESK_API_KEY", SECRET)
    result = CliRunner().invoke(
        app, ["config", "--config", str(write(tmp_path, f"ticket_system:\n  base_url: '{url}'\n"))]
    )
    assert result.exit_code == (2 if refused else 0), result.output
    assert ("https://" in result.output and "loopback" in result.output) == refused


@pytest.mark.parametrize("command", [["run"], ["backfill", "2026-01-01", "2026-01-02"]])
def test_runs_refuse_a_training_only_config(tmp_path, command):
    result = CliRunner().invoke(app, [*command, "--config", str(write(tmp_path, "{}\n"))])
    assert result.exit_code == 2, result.output
    assert "freshdesk_domain" in result.output and "FRESHDESK_API_KEY" in result.output
    assert "Traceback" not in result.output
