"""`triage evaluate` of a model with a tags head: the tags scored beside the tags baseline as in training,
with the precision of the tags the model adds at its own thresholds, in the report and the output."""

from __future__ import annotations

import json

import pytest
from model_tickets import labelled_tickets, tiny_config
from typer.testing import CliRunner

from triage.cli import app


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A file whose ``tags`` column (comma-separated) follows the text, and a model trained on it."""
    from triage.models.store import ModelStore
    from triage.models.training import train

    root = tmp_path_factory.mktemp("tags-evaluate")
    frame = labelled_tickets(300, seed=4)
    frame["tags"] = [
        ",".join([group.lower(), *(["urgent"] if priority == "high" else [])])
        for group, priority in zip(frame["group"], frame["priority"], strict=True)
    ]
    table = root / "tickets.csv"
    frame.to_csv(table, index=False)
    result = train(frame, tiny_config(root, fields=["group"], tags=True, c_dense=0.01, neighbours=0))
    assert result.tags is not None
    version, _, _ = ModelStore(root / "store").register(result)
    return root, table, version, frame


def _evaluate(*args: str):
    return CliRunner().invoke(app, ["evaluate", *args])


def test_evaluate_scores_the_tags_as_training_did_and_says_what_the_model_adds(stored, tmp_path):
    root, table, version, _ = stored
    out = tmp_path / "report"
    result = _evaluate(str(table), "--store", str(root / "store"), "--report-dir", str(out))
    assert result.exit_code == 0, result.output
    ours = json.loads((out / "report.json").read_text())["tags"]
    trained = json.loads((version.path / "report" / "report.json").read_text())["tags"]
    assert ours["n_test"] == trained["n_test"]
    for who in ("model", "baseline"):  # same data, same temporal-or-seeded split: the same scores
        assert ours[who]["micro_f1"] == pytest.approx(trained[who]["micro_f1"], abs=1e-6)
        assert ours[who]["macro_f1"] == pytest.approx(trained[who]["macro_f1"], abs=1e-6)
    added = ours["added"]
    assert added["count"] > 0 and 0.9 <= added["precision"] <= 1.0
    line = next(line for line in result.output.splitlines() if line.startswith("tags "))
    assert f"model micro-F1 {ours['model']['micro_f1']:.3f}" in line
    assert f"baseline {ours['baseline']['micro_f1']:.3f}" in line
    assert f"adds {added['count']} tags at precision {added['precision']:.3f}" in line
    assert "## tags (multi-label)" in (out / "report.md").read_text()


def test_evaluate_on_a_file_without_tags_says_the_tags_were_not_scored(stored, tmp_path):
    root, _, _, frame = stored
    plain = tmp_path / "plain.csv"
    frame.drop(columns=["tags"]).to_csv(plain, index=False)
    result = _evaluate(str(plain), "--store", str(root / "store"), "--report-dir", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert "tags         not scored: the file has no tags" in result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["tags"] is None and any(n.startswith("Tags: not scored") for n in report["notes"])


def test_models_list_shows_the_tags_head_beside_its_baseline(stored):
    root, _, version, _ = stored
    result = CliRunner().invoke(app, ["models", "list", "--store", str(root / "store")])
    assert result.exit_code == 0, result.output
    metrics = version.tags
    assert metrics is not None
    line = next(line for line in result.output.splitlines() if version.version in line)
    assert line.endswith(f"; tags micro-F1 {metrics['micro_f1']:.3f}/{metrics['baseline_micro_f1']:.3f}")
