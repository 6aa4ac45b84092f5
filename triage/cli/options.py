"""What the commands share: the ``--config``/``--store`` options, loading settings, list and pair options."""

from __future__ import annotations

import contextlib
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from triage.settings import Settings

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="config.yml (default: ./config.yml).")
]
StoreOption = Annotated[
    str | None,
    typer.Option("--store", help="Model store folder or s3:// URI (default: model.store from the config)."),
]


#: Per adapter, the keys that only talking to the ticket system needs: a stand-in value (to check every
#: other key without them) and how the user sets the key. Without them a configuration still serves
#: the commands that work on files.
CONNECTION_KEYS: dict[str, dict[str, tuple[str, str]]] = {
    "freshdesk": {
        "freshdesk_domain": ("example", "ticket_system.freshdesk_domain (or base_url)"),
        "freshdesk_api_key": ("stand-in-key", "FRESHDESK_API_KEY"),
    }
}
FILE_COMMANDS = "train, evaluate and predict from files"
RUN_COMMANDS = "run, backfill, retrain and nightly"


def settings_or_exit(config: Path | None, *, adapter: bool = False) -> Settings:
    """The settings from ``config`` (and the environment), with the adapter's own keys checked too
    when ``adapter``; exit 2 with the message naming each bad key (and every missing connection key)."""
    from triage.adapters.registry import adapter_config
    from triage.settings import ConfigError, load_settings

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if adapter:
        try:
            adapter_config(settings.ticket_system)
        except ConfigError as exc:
            typer.echo(str(exc), err=True)
            with contextlib.suppress(ConfigError):  # other problems too: the message above names them
                if missing := connection_gaps(settings):
                    typer.echo(f"{RUN_COMMANDS} need {' and '.join(missing)}", err=True)
            raise typer.Exit(2) from None
    return settings


def connection_gaps(settings: Settings) -> list[str]:
    """How to set each connection key (:data:`CONNECTION_KEYS`) the adapter needs but lacks; [] when none.

    Raises :class:`~triage.settings.ConfigError` for any other problem (a bad value, an unknown key or
    adapter), checked with stand-ins for the absent connection keys.
    """
    from triage.adapters.registry import adapter_config
    from triage.settings import ConfigError, TicketSystemSettings

    options = settings.ticket_system.adapter_options()
    absent = {
        key: spec
        for key, spec in CONNECTION_KEYS.get(settings.ticket_system.adapter, {}).items()
        if key not in options
    }

    def check(stand_ins: dict[str, str]) -> None:
        section = {"adapter": settings.ticket_system.adapter, **options, **stand_ins}
        adapter_config(TicketSystemSettings.model_validate(section))

    check({key: value for key, (value, _) in absent.items()})
    missing = []
    for key, (_, how) in absent.items():
        try:
            check({other: value for other, (value, _) in absent.items() if other != key})
        except ConfigError:
            missing.append(how)
    return missing


def store_root(config: Path | None, store: str | None) -> Path | str:
    """``--store`` if given, else ``model.store`` from the settings (exit 2 on invalid config): a folder,
    or an object store's URI (``s3://...``)."""
    if store is None:
        return settings_or_exit(config).model.store
    return store if "://" in store else Path(store)


def split_list(value: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [part.strip() for part in value.split(",") if part.strip()]


def field_columns(pairs: list[str], option: str = "--label-column") -> dict[str, str]:
    """``["group=queue"]`` -> ``{"group": "queue"}``; exit 2 on a malformed pair."""
    out = {}
    for pair in pairs:
        name, sep, column = pair.partition("=")
        if not sep or not name.strip() or not column.strip():
            typer.echo(f"{option} expects FIELD=COLUMN, got {pair!r}", err=True)
            raise typer.Exit(2)
        out[name.strip()] = column.strip()
    return out


def command_line(ctx: typer.Context) -> str:
    """The command line that reproduces this run (options left at their default omitted)."""
    parts = ["triage", ctx.command.name or ""]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if value is None or value == param.default or value == []:
            continue
        if param.param_type_name == "argument":
            parts.append(str(value))
        elif isinstance(value, bool):
            parts.append(param.opts[0] if value else param.secondary_opts[0])
        else:
            for item in value if isinstance(value, list | tuple) else [value]:
                parts += [param.opts[0], str(item)]
    return shlex.join(parts)
