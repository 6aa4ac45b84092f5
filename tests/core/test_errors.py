"""One root for triage's own errors; one formatter of pydantic's errors."""

import pydantic
import pytest
from pydantic import BaseModel, ConfigDict, model_validator

from triage.adapters.errors import TicketSystemError, TicketSystemValidationError
from triage.adapters.freshdesk.search import SearchTooBroadError
from triage.errors import ConfigError, PipelineError, TriageError, validation_problems
from triage.models.e5_rebuild import E5ImageError
from triage.models.encoders import EncoderNotAvailableError
from triage.models.manifest import ModelFolderError
from triage.models.store import StoreError
from triage.models.training import TrainingError
from triage.settings import ConfigError as SettingsConfigError


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (ConfigError, ValueError),
        (PipelineError, RuntimeError),
        (TicketSystemError, Exception),
        (TrainingError, ValueError),
        (StoreError, RuntimeError),
        (ModelFolderError, ValueError),
        (E5ImageError, ValueError),
        (EncoderNotAvailableError, RuntimeError),
    ],
)
def test_every_typed_error_is_a_triage_error_and_keeps_what_callers_catch(error, builtin):
    assert issubclass(error, TriageError) and issubclass(error, builtin)


def test_config_errors_are_bad_input_the_others_failures():
    assert SettingsConfigError is ConfigError  # still importable from triage.settings
    assert ConfigError("x").exit_code == 2
    assert PipelineError("x").exit_code == TicketSystemError("x").exit_code == 1


def test_the_adapters_validation_error_does_not_shadow_pydantics_and_keeps_its_audit_code():
    assert TicketSystemValidationError.__name__ != pydantic.ValidationError.__name__
    assert TicketSystemValidationError.reason_code == "ValidationError"  # rows written before the rename
    assert SearchTooBroadError.reason_code == "SearchTooBroadError"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: int = 0
    api_key: int = 0
    low: int = 0
    high: int = 1

    @model_validator(mode="after")
    def _ordered(self):
        if self.low > self.high:
            raise ValueError("low must not exceed high")
        return self


def problems(data, **kwargs):
    with pytest.raises(pydantic.ValidationError) as info:
        _Section.model_validate(data)
    return validation_problems(info.value, **kwargs)


def test_one_line_per_problem_naming_the_key_and_never_a_secret():
    lines = problems({"mode": "x", "api_key": "sk-secret-1234", "mdoe": 1})
    assert lines[0].startswith("mode: ") and lines[0].endswith("(got 'x')")
    assert lines[1].startswith("api_key: ") and "sk-secret" not in lines[1]
    assert lines[2] == "mdoe: unknown key"


def test_a_model_level_problem_never_shows_the_whole_input():
    assert problems({"low": 2, "high": 1, "api_key": 0}) == ["low must not exceed high"]
    named = problems({"low": 2, "high": 1}, key=lambda loc: ".".join(["section", *map(str, loc)]))
    assert named == ["section: low must not exceed high"]
