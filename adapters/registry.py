"""Find adapters by name through the ``triage.adapters`` entry-point group and build them from settings."""

from __future__ import annotations

from importlib.metadata import entry_points

from pydantic import BaseModel, ValidationError

from triage.adapters.base import TicketSystemAdapter
from triage.errors import ConfigError, validation_problems
from triage.settings import TicketSystemSettings

GROUP = "triage.adapters"


def available_adapters() -> list[str]:
    """Names of every installed adapter."""
    return sorted(ep.name for ep in entry_points(group=GROUP))


def adapter_class(name: str) -> type[TicketSystemAdapter]:
    """The adapter class registered under ``name``; :class:`ConfigError` if there is none."""
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, TicketSystemAdapter)):
                raise ConfigError(
                    f"ticket_system.adapter: {name!r} ({ep.value}) is not a TicketSystemAdapter"
                )
            return cls
    known = ", ".join(available_adapters()) or "none installed"
    raise ConfigError(f"ticket_system.adapter: unknown adapter {name!r} (available: {known})")


def adapter_config(settings: TicketSystemSettings) -> BaseModel:
    """The adapter's own settings, validated. :class:`ConfigError` names each ``ticket_system.<key>``."""
    cls = adapter_class(settings.adapter)
    try:
        return cls.config_model.model_validate(settings.adapter_options())
    except ValidationError as exc:
        problems = validation_problems(exc, key=lambda loc: ".".join(map(str, ("ticket_system", *loc))))
        heading = f"invalid configuration for adapter {settings.adapter!r}:"
        raise ConfigError("\n".join([heading, *(f"  {p}" for p in problems)])) from None


def build_adapter(settings: TicketSystemSettings) -> TicketSystemAdapter:
    """Validate the adapter's own keys and construct it. Errors name ``ticket_system.<key>``."""
    return adapter_class(settings.adapter)(adapter_config(settings))
