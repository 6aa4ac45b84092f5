"""The flow commands fail fast and clearly on bad input, before any flow starts."""

from typer.testing import CliRunner

from triage.cli import app


def test_a_missing_or_invalid_config_exits_2_naming_the_problem(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(app, ["run", "--config", str(tmp_path / "nope.yml")])
    assert missing.exit_code == 2 and "config file not found" in missing.output
    bad = tmp_path / "bad.yml"
    bad.write_text("pipeline:\n  mode: aply\n")
    for command in (["run"], ["retrain"], ["nightly"], ["backfill", "2026-01-01", "2026-01-02"]):
        result = runner.invoke(app, [*command, "--config", str(bad)])
        assert result.exit_code == 2 and "pipeline.mode" in result.output, command


def test_the_demo_never_wipes_a_folder_it_did_not_create(tmp_path):
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(app, ["demo", "--dir", str(precious)])
    assert result.exit_code == 1 and "not made by the demo" in result.output
    assert (precious / "notes.txt").read_text() == "keep me"
