"""Test-wide isolation: no test reads the developer's config.yml or environment overrides."""

import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("TRIAGE_") or name in ("FRESHDESK_API_KEY", "FRESHDESK_API_KEY_SECRET_BLOCK"):
            monkeypatch.delenv(name)
    empty = tmp_path / "config.yml"
    empty.write_text("{}\n")
    monkeypatch.setenv("TRIAGE_CONFIG", str(empty))
    yield
