"""Test-wide isolation: no test reads the developer's config.yml or environment overrides, and no
log handler is left writing to a stream a test closed; under pytest-xdist, one torch thread per worker."""

import contextlib
import logging
import os
import sys

import pytest


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread_per_worker():
    """`make test` runs the plain suite on pytest-xdist workers, one per core: a worker's torch then
    computes on one thread (more would only wait for the other workers' cores). Without xdist, as is."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("TRIAGE_") or name in ("FRESHDESK_API_KEY", "FRESHDESK_API_KEY_SECRET_BLOCK"):
            monkeypatch.delenv(name)
    empty = tmp_path / "config.yml"
    empty.write_text("{}\n")
    monkeypatch.setenv("TRIAGE_CONFIG", str(empty))
    yield


@pytest.fixture(autouse=True)
def _handlers_on_open_streams():
    """Prefect, transformers and torch attach handlers to the sys.stderr of the moment they first log.
    Inside ``CliRunner.invoke`` that is the runner's stream, closed afterwards: every later record then
    printed a "--- Logging error ---" traceback (the suite ran about ten times slower). Such handlers,
    and the rich console Prefect's handler prints through, are pointed back at sys.stderr after each test."""
    yield
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if not isinstance(handler, logging.StreamHandler):
                continue
            with handler.lock or contextlib.nullcontext():
                if getattr(handler.stream, "closed", False):
                    handler.stream = sys.stderr  # not setStream: it flushes the closed stream
                console = getattr(handler, "console", None)  # Prefect's PrefectConsoleHandler
                if console is not None and getattr(console.file, "closed", False):
                    console.file = sys.stderr
