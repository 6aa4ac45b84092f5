"""A run parses its settings once, when it starts: config.yml edited during the run reaches none of its
stages (its mode, thresholds and lake are the ones it started with)."""

from __future__ import annotations

import pytest
import yaml

import triage.flows.common
import triage.tasks.context
import triage.tasks.predict
from triage.settings import load_settings

pytestmark = pytest.mark.flow


def test_config_yml_edited_between_two_stages_reaches_none_of_the_run(world, monkeypatch):
    from triage.flows.incremental import TriageParams, triage_flow

    config, sim, elsewhere = world["config"], world["sim"], world["tmp"] / "another-lake"
    parses: list[object] = []

    def counting(*args, **kwargs):
        parses.append(args)
        return load_settings(*args, **kwargs)

    monkeypatch.setattr(triage.flows.common, "load_settings", counting)
    monkeypatch.setattr(triage.tasks.context, "load_settings", counting)

    predict = triage.tasks.predict.predict

    def predict_then_edit_config(*args, **kwargs):
        manifest = predict(*args, **kwargs)
        data = yaml.safe_load(config.read_text())  # the operator's edit, between predict and decide
        data["pipeline"].update(mode="shadow", lake=str(elsewhere))
        for rule in data["fields"].values():
            rule.update(apply_threshold=1.0, suggest_threshold=1.0)
        config.write_text(yaml.safe_dump(data))
        return manifest

    monkeypatch.setattr(triage.tasks.predict, "predict", predict_then_edit_config)

    summary = triage_flow(TriageParams(config=str(config)))
    assert len(parses) == 1  # once, when the run started; no stage read config.yml again
    assert summary.mode == summary.stages["decide"]["mode"] == summary.stages["push"]["mode"] == "apply"
    applied = summary.counts["decide"]
    assert sum(outcomes.get("apply", 0) for outcomes in applied.values()) > 0  # the starting thresholds
    assert [c for c in sim.changes if c.source in ("api", "bulk")]  # written, in the starting mode
    assert not elsewhere.exists()  # every stage wrote to the starting lake
    assert yaml.safe_load(config.read_text())["pipeline"]["mode"] == "shadow"  # the edit did happen
