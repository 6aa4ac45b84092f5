"""Every CLI error path we can reach with bad configuration: the API key never shows, nor a traceback.

The key is recognisable and set where an operator sets it (``FRESHDESK_API_KEY``); each bad config
also carries it somewhere it should not be (a broken YAML line, a URL, the wrong key, a binary file).
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from triage.cli import app

KEY = "sk-SWEEP-7f3a9c1e5b2d"

CONFIGS: dict[str, str | bytes] = {
    "yaml error on the key's line": f"ticket_system:\n  freshdesk_domain: acme\n  freshdesk_api_key: {KEY}: x\n",
    "yaml error naming the key": f"ticket_system:\n  freshdesk_api_key: *{KEY}\n",
    "unclosed flow mapping": f"ticket_system: {{freshdesk_api_key: '{KEY}',\n",
    "tab before the key": f"ticket_system:\n\tfreshdesk_api_key: {KEY}\n",
    "key as the base_url user": f"ticket_system:\n  base_url: 'https://{KEY}:X@acme.freshdesk.com/api/v2'\n",
    "key as the base_url password": f"ticket_system:\n  base_url: 'https://agent:{KEY}@acme.freshdesk.com/api/v2'\n",
    "key in the base_url path": f"ticket_system:\n  base_url: 'http://acme.freshdesk.com/{KEY}/api/v2'\n",
    "plain http": "ticket_system:\n  base_url: 'http://acme.freshdesk.com/api/v2'\n",
    "key pasted into the domain": f"ticket_system:\n  freshdesk_domain: '{KEY}.example.com'\n",
    "key under a misspelt name": f"ticket_system:\n  freshdesk_domain: acme\n  freshdesk_api_kye: '{KEY}'\n",
    "key in a pipeline setting": f"pipeline:\n  mode: '{KEY}'\n",
    "key as a field name": f"fields:\n  priority:\n    requires: ['{KEY}']\n",
    "top level is a list": f"- {KEY}\n",
    "binary file": b"\x89PNG\r\n\x1a\n\xff\xfe" + KEY.encode() + b"\x00",
    "unknown adapter": "ticket_system:\n  adapter: zendesk\n",
    "no domain": "pipeline:\n  overlap_seconds: -5\n",
}

COMMANDS = [
    ["config"],
    ["run"],
    ["run", "--mode", "aply"],
    ["backfill", "2026-01-01", "2026-01-02"],
    ["retrain"],
    ["nightly"],
    ["train", "missing.csv"],
    ["predict", "missing.parquet", "out.parquet"],
    ["evaluate", "missing.csv"],
    ["models", "list"],
    ["models", "rollback"],
    ["encoder", "list"],
]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_no_cli_error_path_shows_the_api_key(tmp_path, monkeypatch, name):
    monkeypatch.setenv("FRESHDESK_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "config.yml"
    content = CONFIGS[name]
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    runner = CliRunner()
    for command in COMMANDS:
        result = runner.invoke(app, [*command, "--config", str(path)])
        where = f"{name}: triage {' '.join(command)}"
        assert KEY not in result.stdout and KEY not in result.stderr, where
        assert result.exception is None or isinstance(result.exception, SystemExit), (where, result.exception)
        assert result.exit_code in (0, 1, 2), where
        if result.exit_code:
            assert result.stderr.strip(), where  # a failure says why
        if command[0] in ("config", "run", "backfill", "retrain", "nightly"):
            assert result.exit_code == 2, (where, result.output)  # all of them are configuration errors


def test_a_key_pasted_into_the_wrong_setting_is_masked_in_the_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FRESHDESK_API_KEY", KEY)
    path = tmp_path / "config.yml"
    path.write_text(CONFIGS["key pasted into the domain"])
    result = CliRunner().invoke(app, ["config", "--config", str(path)])
    assert result.exit_code == 2 and "ticket_system.freshdesk_domain" in result.stderr
    assert "(got '***.example.com')" in result.stderr
