"""What every stage of one run shares: its id, window, configuration and lake. No Prefect here."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from triage.lake import Lake, Window
from triage.lake.runs import UtcDatetime, WindowSource
from triage.settings import Settings, load_settings


class PipelineError(RuntimeError):
    """A stage cannot run (no model, no data): the message says what to do."""


class StageContext(BaseModel):
    """Identifies one run and how to rebuild its settings (small and picklable: no secrets inside).

    Settings are re-read from ``config_path`` (plus the environment and ``overrides``) where a stage
    runs, so the API key travels through the environment or a Secret block, never as a parameter.
    """

    model_config = ConfigDict(frozen=True)

    run_id: str
    flow: str
    window_start: UtcDatetime
    window_end: UtcDatetime
    window_source: WindowSource
    config_path: str | None = None
    overrides: dict[str, Any] = {}
    parent_run_id: str | None = None
    #: Which attempt of the flow run this is (Prefect's run count: 2 and up after a retry).
    attempt: int = 1

    @model_validator(mode="after")
    def _ordered(self) -> StageContext:
        if self.window_start > self.window_end:
            raise ValueError(
                f"window_start ({self.window_start:%Y-%m-%d %H:%M:%S} UTC) is after window_end "
                f"({self.window_end:%Y-%m-%d %H:%M:%S} UTC): check the since/until parameters"
            )
        return self

    @property
    def window(self) -> Window:
        return Window(start=self.window_start, end=self.window_end, source=self.window_source)

    @property
    def window_label(self) -> str:
        """The window for people, e.g. ``[2026-01-01 00:00, 2026-01-02 00:00)`` (names task runs)."""
        return f"[{self.window_start:%Y-%m-%d %H:%M}, {self.window_end:%Y-%m-%d %H:%M})"

    @property
    def partition(self) -> datetime:
        """The run's ``date=`` partition: the UTC date of its window end."""
        return self.window_end

    def settings(self) -> Settings:
        return load_settings(self.config_path, **self.overrides)

    def lake(self, settings: Settings | None = None) -> Lake:
        return Lake((settings or self.settings()).pipeline.lake)

    def model_store(self, settings: Settings | None = None) -> Path:
        return Path((settings or self.settings()).model.store)
