"""The flow commands fail fast and clearly on bad input, before any flow starts."""

import pytest
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


def _valid_config(tmp_path, monkeypatch):
    monkeypatch.setenv("FRESHDESK_API_KEY", "sk-pipeline-0123456789")
    path = tmp_path / "ok.yml"
    path.write_text(
        f"ticket_system:\n  base_url: http://127.0.0.1:9/api/v2\npipeline:\n  lake: {tmp_path}/lake\n"
    )
    return path


def test_a_misspelt_mode_is_a_configuration_error(tmp_path, monkeypatch):
    path = _valid_config(tmp_path, monkeypatch)
    for command in (["run"], ["backfill", "2026-01-01", "2026-01-02"]):
        result = CliRunner().invoke(app, [*command, "--mode", "aply", "--config", str(path)])
        assert result.exit_code == 2, (command, result.output)
        assert "--mode" in result.output and "'apply'" in result.output, result.output
        assert not (tmp_path / "lake").exists()  # refused before any flow started


@pytest.mark.parametrize(
    "window",
    [
        ["--since", "2026-02-01", "--until", "2026-01-01"],
        ["--since", "2026-01-01T10:00:00+00:00", "--until", "2026-01-01T11:00:00+02:00"],
        ["--since", "2999-01-01"],
    ],
)
def test_a_window_that_ends_before_it_starts_is_refused(tmp_path, monkeypatch, window):
    path = _valid_config(tmp_path, monkeypatch)
    result = CliRunner().invoke(app, ["run", *window, "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert "--since" in result.output and "later than" in result.output
    assert not (tmp_path / "lake").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["2026-01-02", "2026-01-01"], "end must be after start"),
        (["2026-01-01", "2026-01-02", "--batch-hours", "0"], "--batch-hours"),
    ],
)
def test_bad_backfill_parameters_are_configuration_errors(tmp_path, monkeypatch, args, expected):
    path = _valid_config(tmp_path, monkeypatch)
    result = CliRunner().invoke(app, ["backfill", *args, "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert expected in result.output and isinstance(result.exception, SystemExit)
