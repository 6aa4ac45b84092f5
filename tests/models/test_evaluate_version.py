"""`triage evaluate`: a stored version scored on a labelled file, beside the baseline, as a report."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from triage.cli import app

TOPICS = {
    "billing": ["invoice charged twice", "refund my payment", "wrong amount on the invoice", "billing error"],
    "network": ["vpn connection drops", "wifi is down", "cannot reach the server", "network outage"],
    "hardware": ["printer jammed", "laptop screen broken", "keyboard not working", "monitor flickers"],
}


def _tickets() -> pd.DataFrame:
    rows = []
    for queue, phrases in TOPICS.items():
        for i in range(70):
            rows.append(
                {
                    "subject": phrases[i % 4],
                    "body": f"{phrases[(i + 1) % 4]} since {i} days",
                    "queue": queue,
                    "priority": ["low", "medium", "high"][i % 3],
                    "language": "de" if i % 2 else "en",
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A tiny MiniLM model trained on the table and registered in a store (a few seconds)."""
    from triage.models.store import ModelStore
    from triage.models.training import train
    from triage.models.training_config import TrainConfig

    root = tmp_path_factory.mktemp("store")
    # a fixed L2 strength skips the per-field search: 4x faster, and this test is about evaluation
    fixed_strength = {"c_dense": 1.0} if "c_dense" in TrainConfig.model_fields else {}
    table = root / "tickets.csv"
    _tickets().to_csv(table, index=False)
    config = TrainConfig(
        fields=["group", "priority"],
        label_columns={"group": "queue"},
        text_columns=["subject", "body"],
        head="linear",
        max_length=32,
        min_examples_per_class=5,
        store_root=root,
        **fixed_strength,
    )
    result = train(pd.read_csv(table), config, slice_column="language")
    version, _, _ = ModelStore(root).register(result)
    return root, table, version


def _evaluate(*args: str):
    return CliRunner().invoke(app, ["evaluate", *args])


def test_reproduces_the_training_evaluation(stored, tmp_path):
    root, table, version = stored
    out = tmp_path / "report"
    result = _evaluate(
        str(table), "--store", str(root), "--label-column", "group=queue", "--text-columns", "subject,body",
        "--slice-column", "language", "--report-dir", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ours = json.loads((out / "report.json").read_text())
    trained = json.loads((version.path / "report" / "report.json").read_text())
    for name in ("group", "priority"):
        for who in ("model", "baseline"):
            assert ours["fields"][name][who]["macro_f1"] == pytest.approx(
                trained["fields"][name][who]["macro_f1"]
            )
    assert ours["dataset"]["data_hash"] == trained["dataset"]["data_hash"]
    assert ours["model"]["version"] == version.version
    assert set(ours["slices"]) == {"language=de", "language=en"}
    assert ours["notes"][0].startswith("Same data and split")
    assert ours["command"].startswith(f"triage evaluate {table} --store {root} --label-column group=queue")
    assert (out / "report.html").is_file() and len(list((out / "plots").glob("*.png"))) == 6
    assert "model macro-F1" in result.output


def test_separate_test_file_and_one_field(stored, tmp_path):
    root, table, _ = stored
    test_file = tmp_path / "test.parquet"
    _tickets().iloc[::3].assign(subject=lambda f: "urgent: " + f["subject"]).to_parquet(test_file)
    out = tmp_path / "report"
    result = _evaluate(
        str(table), "--test-data", str(test_file), "--store", str(root), "--fields", "group",
        "--label-column", "group=queue", "--text-columns", "subject,body", "--report-dir", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads((out / "report.json").read_text())
    assert list(data["fields"]) == ["group"]
    assert data["dataset"]["split"] == "given test set"
    assert data["dataset"]["n_test"] == len(_tickets().iloc[::3])
    assert data["notes"][0].startswith("The model was trained on other data")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--label-column", "queue"], 2, "FIELD=COLUMN"),
        (["--fields", "type"], 1, "does not predict ['type']"),
        (["--label-column", "group=no_such_column"], 1, "no_such_column"),
        (["--version", "19990101-000000-000000"], 1, "cannot evaluate"),
    ],
)
def test_bad_requests_fail_clearly(stored, tmp_path, args, code, message):
    root, table, _ = stored
    result = _evaluate(str(table), "--store", str(root), "--text-columns", "subject,body", *args)
    assert result.exit_code == code, result.output
    assert message in result.output


def test_missing_file_fails_clearly(stored, tmp_path):
    root, _, _ = stored
    result = _evaluate(str(tmp_path / "nope.csv"), "--store", str(root))
    assert result.exit_code == 1
    assert "nope.csv" in result.output
