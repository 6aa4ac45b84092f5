"""A run's settings: one snapshot, taken when the run starts and carried by its context to every stage."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from prefect.utilities.annotations import quote
from prefect.utilities.collections import visit_collection

import triage.tasks.context
from triage.settings import load_settings
from triage.tasks.context import StageContext

END = datetime(2026, 1, 2, tzinfo=UTC)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "triage.yml"
    path.write_text(yaml.safe_dump({"pipeline": {"mode": "suggest", "lake": str(tmp_path / "lake")}}))
    return path


@pytest.fixture
def parses(monkeypatch):
    """How many times the stages' context parsed the configuration."""
    count = [0]

    def counting(*args, **kwargs):
        count[0] += 1
        return load_settings(*args, **kwargs)

    monkeypatch.setattr(triage.tasks.context, "load_settings", counting)
    return count


def context(config, **fields) -> StageContext:
    return StageContext(
        run_id="run-1",
        flow="triage",
        window_start=END - timedelta(days=1),
        window_end=END,
        window_source="explicit",
        config_path=str(config),
        **fields,
    )


def test_a_context_built_with_a_snapshot_never_reads_config_yml(config, parses):
    ctx = context(config).with_settings(load_settings(config))
    config.write_text("pipeline: {mode: apply}\n")  # an edit during the run
    assert ctx.settings().pipeline.mode == ctx.mode == "suggest"
    assert parses[0] == 0


def test_a_context_without_one_parses_once_then_keeps_it(config, parses):
    ctx = context(config)
    first = ctx.settings()
    config.write_text("pipeline: {mode: apply}\n")
    assert ctx.settings() is first and ctx.mode == "suggest" and parses[0] == 1
    # A copy naming other overrides (or another file) is another configuration: it takes its own snapshot.
    apply = ctx.model_copy(update={"overrides": {"pipeline": {"mode": "shadow"}}})
    assert apply.mode == "shadow" and parses[0] == 2
    assert ctx.model_copy(update={"run_id": "run-2"}).settings() is first


def test_the_snapshot_travels_with_the_context_as_prefect_hands_it_to_a_task(config, parses):
    """Prefect resolves a task's parameters with ``visit_collection`` (rebuilding models whose fields
    changed) before the task runs: the snapshot, a private attribute, stays with the context."""
    settings = load_settings(config)
    ctx = context(config).with_settings(settings)
    config.write_text("pipeline: {mode: apply}\n")
    resolved = visit_collection({"ctx": ctx}, visit_fn=lambda x: x, return_data=True, max_depth=-1)
    # A field resolved to a new object (as an upstream result would be) makes Prefect rebuild the context.
    rebuilt = visit_collection(
        {"ctx": ctx}, visit_fn=lambda x: {} if x == {} else x, return_data=True, max_depth=-1
    )
    assert rebuilt["ctx"] is not ctx and rebuilt["ctx"].overrides is not ctx.overrides
    for other in (resolved["ctx"], rebuilt["ctx"], pickle.loads(pickle.dumps(ctx)), quote(ctx).unquote()):
        assert other.settings().pipeline.mode == "suggest"
    assert resolved["ctx"].settings() is settings
    assert parses[0] == 0


def test_the_snapshot_is_in_no_dump_or_repr(config, monkeypatch):
    secret = "sk-snapshot-0123456789"
    monkeypatch.setenv("FRESHDESK_API_KEY", secret)
    ctx = context(config).with_settings(load_settings(config))
    assert ctx.settings().ticket_system.adapter_options()["freshdesk_api_key"].get_secret_value() == secret
    for rendering in (repr(ctx), str(ctx), ctx.model_dump_json()):
        assert secret not in rendering and "suggest" not in rendering
