"""What every stage of one run shares: its id, window, settings snapshot and lake. No Prefect here."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, PrivateAttr, model_validator

from triage.lake import Lake, Window
from triage.lake.runs import UtcDatetime, WindowSource
from triage.settings import Mode, Settings, load_settings


class StageContext(BaseModel):
    """Identifies one run and carries its settings: one snapshot, parsed when the run starts.

    A flow parses config.yml (plus the environment and ``overrides``) once, at the start of each
    attempt, and builds its context with that snapshot (:meth:`with_settings`); every stage reads it
    through :meth:`settings`, so an edit of config.yml during a run reaches no stage of that run.
    A flow run retried (Retry in the UI, a crash's rerun) parses again at the start of the new
    attempt: the operator who fixed config.yml and pressed Retry gets the fix; stages whose cached
    results the retry reuses (extract, predict) keep what they computed with the earlier snapshot.

    The snapshot is a private attribute, held in memory only (it holds the API key, as a ``SecretStr``):
    in no dump, repr, cache key or persisted result; Prefect hands it to the tasks in memory with the
    context (its parameter resolution keeps private attributes). A context built without one (tests,
    tools) parses ``config_path`` once, at its first :meth:`settings` call; :meth:`model_copy` with
    another ``config_path`` or ``overrides`` drops it.
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
    _settings: Settings | None = PrivateAttr(default=None)

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
        """The run's settings snapshot (never re-read from config.yml once taken)."""
        if self._settings is None:
            self._settings = load_settings(self.config_path, **self.overrides)
        return self._settings

    @property
    def mode(self) -> Mode:
        """The run's mode (shadow, suggest, apply), from the snapshot: the one every stage acts on."""
        return self.settings().pipeline.mode

    def with_settings(self, settings: Settings) -> StageContext:
        """This context carrying ``settings`` as its snapshot."""
        ctx = super().model_copy()
        ctx._settings = settings
        return ctx

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy; one with another ``config_path`` or ``overrides`` takes its own snapshot."""
        ctx = super().model_copy(update=update, deep=deep)
        if update and {"config_path", "overrides"} & update.keys():
            ctx._settings = None
        return ctx

    def lake(self, settings: Settings | None = None) -> Lake:
        return Lake((settings or self.settings()).pipeline.lake)
