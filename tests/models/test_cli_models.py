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
    # not a terminal: one line as each phase starts and one as it ends, in order, with its seconds
    phases = ["preparation", "embedding", "features", "head selection", "final fit", "evaluation"]
    phases += ["saving", "report"]
    lines = first.output.splitlines()
    ends = [next(i for i, line in enumerate(lines) if line.startswith(f"{p} done in ")) for p in phases]
    assert ends == sorted(ends) and all(f"{p} ..." in lines for p in phases)
    assert "|" not in first.output  # no bars
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
    assert no_column.exit_code == 1 and "Traceback" not in no_column.output
    assert no_column.output.startswith("cannot train: no column 'urgency' for field urgency")
    assert "its columns: subject, body, queue, priority, type" in no_column.output
    assert len(no_column.output.strip().splitlines()) == 1
    bad_pair = _train(files, "--label-column", "group")
    assert bad_pair.exit_code == 2 and "FIELD=COLUMN" in bad_pair.output
    empty = runner.invoke(app, ["models", "rollback", "--store", str(tmp_path)])
    assert empty.exit_code == 1 and "nothing to roll back to" in empty.output
    nothing = runner.invoke(
        app, ["predict", str(files / "open.parquet"), str(tmp_path / "o.parquet"), "--store", str(tmp_path)]
    )
    assert nothing.exit_code == 1 and "no current model" in nothing.output


def test_fields_default_to_the_label_columns_the_file_has(files, tmp_path):
    labelled = pd.read_csv(files / "labelled.csv")
    labelled[["subject", "body", "queue"]].rename(columns={"queue": "group"}).to_csv(
        tmp_path / "groups.csv", index=False
    )
    args = ["train", str(tmp_path / "groups.csv"), "--max-length", "32", "--min-examples", "10"]
    result = runner.invoke(app, [*args, "--store", str(tmp_path / "store"), "--no-promote"])
    assert result.exit_code == 0, result.output
    assert "training group on 90 rows" in result.output
    assert "(no column for priority, type; see --label-column)" in result.output
    assert "group        macro-F1" in result.output and "priority" not in result.output.split("\n", 1)[1]


def test_a_file_without_any_label_column_names_its_columns(files, tmp_path):
    labelled = pd.read_csv(files / "labelled.csv")
    labelled[["subject", "body", "queue"]].to_csv(tmp_path / "queues.csv", index=False)
    result = runner.invoke(app, ["train", str(tmp_path / "queues.csv"), "--store", str(tmp_path / "store")])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "no label column for group, priority, type" in result.output
    assert "its columns: subject, body, queue" in result.output
    assert "--label-column group=COLUMN" in result.output


def test_in_a_terminal_each_phase_gets_a_bar_with_an_estimate_and_the_end_a_line_per_phase():
    import io

    from triage.cli.models import TerminalProgress
    from triage.models.progress import phase

    out = io.StringIO()
    shown = TerminalProgress(out, tty=True, redraw_s=0.0)
    for name, total in (("embedding", 4), ("head selection", 6)):
        with phase(shown, name, total) as step:
            for _ in range(total):
                step.step()
    shown.summary()
    text = out.getvalue()
    assert "4/4" in text and "6/6" in text and " left]" in text  # i/n and the remaining time
    summary = text[text.index("phases (") :].splitlines()
    assert [line.split()[0] for line in summary[1:]] == ["embedding", "head"]
    assert all(line.rstrip().endswith(" s") for line in summary[1:])
