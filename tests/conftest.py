"""Test-wide isolation: no test reads the developer's config.yml or environment overrides.

Prefect and torch are imported here on purpose: they attach logging handlers to the sys.stderr of
the moment they are first imported, and this is pytest's stream for the whole session. First
imported inside a ``CliRunner.invoke``, the handlers kept that runner's stderr, closed afterwards,
and every later log record printed a "--- Logging error ---" traceback (the suite ran about ten
times slower).
"""

import os

import prefect  # noqa: F401
import pytest
import torch  # noqa: F401


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("TRIAGE_") or name in ("FRESHDESK_API_KEY", "FRESHDESK_API_KEY_SECRET_BLOCK"):
            monkeypatch.delenv(name)
    empty = tmp_path / "config.yml"
    empty.write_text("{}\n")
    monkeypatch.setenv("TRIAGE_CONFIG", str(empty))
    yield
