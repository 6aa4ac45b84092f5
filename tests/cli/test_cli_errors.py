"""The CLI's top-level handler: any TriageError a command leaves uncaught is one line and an exit status."""

import pytest
from typer.testing import CliRunner

from triage.cli import app
from triage.errors import ConfigError, PipelineError
from triage.redaction import register_secret


@pytest.fixture
def failing_command():
    raised: list[Exception] = []

    @app.command("raise-for-test", hidden=True)
    def command() -> None:
        raise raised[0]

    yield raised
    app.registered_commands.pop()


@pytest.mark.parametrize(("error", "code"), [(ConfigError("bad key"), 2), (PipelineError("no model"), 1)])
def test_an_uncaught_triage_error_is_one_line_and_its_exit_status(failing_command, error, code):
    register_secret("sk-cli-0123456789")
    failing_command.append(type(error)(f"{error} sk-cli-0123456789"))
    result = CliRunner().invoke(app, ["raise-for-test"])
    assert result.exit_code == code
    assert result.output.strip().splitlines() == [f"{error} ***"]
    assert "Traceback" not in result.output


def test_any_other_exception_is_left_alone(failing_command):
    failing_command.append(KeyError("bug"))
    result = CliRunner().invoke(app, ["raise-for-test"])
    assert isinstance(result.exception, KeyError)
