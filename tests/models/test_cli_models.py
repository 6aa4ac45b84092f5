"""`triage train`, `triage predict` and `triage models list|promote|rollback` end to end."""

import pandas as pd
import pytest
from model_tickets import labelled_tickets
from typer.testing import CliRunner

from triage.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    labelled = labelled_tickets(90, seed=12).rename(columns={"group": "queue", "description": "body"})
    labelled.to_csv(folder / "labelled.csv", index=False)
    open_tickets = labelled_tickets(12, seed=13).assign(ticket_id=range(1, 13))
    open_tickets[["ticket_id", "subject", "description"]].to_parquet(folder / "open.parquet")
    return folder


def _train(files, *extra, fields="group,type"):
    args = ["train", str(files / "labelled.csv"), "--fields", fields, "--label-column", "group=queue"]
    args += ["--max-length", "32", "--min-examples", "10", "--store", str(files / "store"), *extra]
    return runner.invoke(app, args)


def test_train_predict_list_promote_and_rollback(files):
    first = _train(files, "--report-dir", str(files / "report"))
    assert first.exit_code == 0, first.output
    assert "group" in first.output and "baseline" in first.output
    assert "promoted: first model in the store" in first.output
    assert (files / "report" / "report.html").is_file()
    report = (files / "report" / "report.json").read_text()
    assert "triage train" in report and "--label-column group=queue" in report  # how it was made

    second = _train(files, "--no-promote")
    assert second.exit_code == 0 and "not promoted (--no-promote)" in second.output

    listed = runner.invoke(app, ["models", "list", "--store", str(files / "store")])
    lines = [line for line in listed.output.splitlines() if line[:1] in "* " and "-" in line[:12]]
    assert listed.exit_code == 0 and len(lines) == 2 and lines[0].startswith("*")
    old, new = lines[0].split()[1], lines[1].split()[0]

    predicted = runner.invoke(
        app,
        ["predict", str(files / "open.parquet"), str(files / "out.parquet"), "--store", str(files / "store")],
    )
    assert predicted.exit_code == 0, predicted.output
    out = pd.read_parquet(files / "out.parquet")
    assert len(out) == 24 and set(out["model_version"]) == {old}

    assert (
        runner.invoke(app, ["models", "promote", new, "--store", str(files / "store")]).output
        == f"current: {new}\n"
    )
    assert (
        runner.invoke(app, ["models", "rollback", "--store", str(files / "store")]).output
        == f"current: {old}\n"
    )


def test_clear_errors_for_bad_input(files, tmp_path):
    missing = runner.invoke(app, ["train", str(tmp_path / "nope.csv"), "--store", str(tmp_path)])
    assert missing.exit_code == 1 and "cannot train" in missing.output and "no such file" in missing.output
    no_column = _train(files, fields="group,urgency")
    assert no_column.exit_code == 1 and "missing column(s) ['urgency']" in no_column.output
    bad_pair = _train(files, "--label-column", "group")
    assert bad_pair.exit_code == 2 and "FIELD=COLUMN" in bad_pair.output
    empty = runner.invoke(app, ["models", "rollback", "--store", str(tmp_path)])
    assert empty.exit_code == 1 and "nothing to roll back to" in empty.output
    nothing = runner.invoke(
        app, ["predict", str(files / "open.parquet"), str(tmp_path / "o.parquet"), "--store", str(tmp_path)]
    )
    assert nothing.exit_code == 1 and "no current model" in nothing.output
