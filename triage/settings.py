"""Settings: one ``config.yml`` overridable by environment variables.

Precedence (highest first): keyword arguments, environment variables (``TRIAGE_<SECTION>__<KEY>``,
e.g. ``TRIAGE_PIPELINE__MODE=apply``), the YAML file, defaults. The ticket-system API key may also
come from ``FRESHDESK_API_KEY``; it is held as a :class:`~pydantic.SecretStr` and never rendered.

Adapter-specific keys (``freshdesk_domain`` ...) live under ``ticket_system`` and are validated by
the adapter's own config model when the adapter is built (see :mod:`triage.adapters.registry`).

A run parses its settings once, when it starts (:class:`triage.tasks.context.StageContext` carries
that snapshot to every stage); a CLI command once, when it starts. The overlay of the environment is
written here (a few lines) rather than with pydantic-settings, which would ignore a misspelt
``TRIAGE_`` section silently, parse values as JSON rather than YAML, and read the environment
wherever a ``Settings`` is built.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, overload

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from triage.errors import ConfigError, validation_problems
from triage.redaction import is_secret_key, register_secret

CONFIG_ENV = "TRIAGE_CONFIG"
ENV_PREFIX = "TRIAGE_"
#: Variables of the same prefix that are not settings: prefect.yaml's work pools (read by `prefect deploy`)
#: and each worker's checkout (read by the deployments' pull step).
DEPLOYMENT_ENV = ("TRIAGE_WORK_POOL", "TRIAGE_PREDICT_WORK_POOL", "TRIAGE_HOME")
API_KEY_ENV = "FRESHDESK_API_KEY"
#: The ``ticket_system`` key that ``API_KEY_ENV`` (or a Secret block, in a flow run) fills.
API_KEY_SETTING = "freshdesk_api_key"
#: Fills ``ticket_system.credentials_block``: a Prefect Secret block holding the API key.
SECRET_BLOCK_ENV = "FRESHDESK_API_KEY_SECRET_BLOCK"
DEFAULT_CONFIG = Path("config.yml")
#: An account's name: one path segment (``account=<name>``) and part of its deployments' names.
ACCOUNT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")

Mode = Literal["shadow", "suggest", "apply"]
Overwrite = Literal["never", "empty_or_default", "always"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TicketSystemSettings(BaseModel):
    """Which adapter to use (its entry-point name) and that adapter's own settings."""

    model_config = ConfigDict(extra="allow")

    adapter: str = "freshdesk"
    account: str | None = Field(
        default=None,
        description="Short name of this helpdesk when one installation triages several (lowercase letters, digits, "
        "'-' and '_'): its lake is `<pipeline.lake>/account=<name>`, its model store `<model.store>/account=<name>` "
        "and its cached results beneath them, so no row, model or lease is shared with another account.",
    )
    credentials_block: str | None = Field(
        default=None,
        description="Name of a Prefect Secret block holding the API key (or `FRESHDESK_API_KEY_SECRET_BLOCK`): "
        "when no key is set, each flow run loads it into its own settings snapshot, never into the environment.",
    )

    @property
    def key_from_block(self) -> bool:
        """Whether the API key is still to come from ``credentials_block`` (named, and no key set)."""
        return bool(self.credentials_block) and (self.model_extra or {}).get(API_KEY_SETTING) is None

    @field_validator("account")
    @classmethod
    def _path_segment(cls, account: str | None) -> str | None:
        if account is not None and not ACCOUNT_NAME.fullmatch(account):
            raise ValueError(
                "an account is 1 to 64 lowercase letters, digits, '-' or '_', starting with a letter or digit"
            )
        return account

    @model_validator(mode="before")
    @classmethod
    def _hide_secrets(cls, data: Any) -> Any:
        """Wrap secret-looking adapter keys so no repr, log line or dump can show them."""
        if isinstance(data, dict):
            data = {
                k: SecretStr(v) if is_secret_key(k) and isinstance(v, str) else v for k, v in data.items()
            }
        return data

    def adapter_options(self) -> dict[str, Any]:
        """The adapter-specific keys, for the adapter's config model to validate."""
        return dict(self.model_extra or {})


class FieldRule(_Section):
    """How one triaged field is decided and written."""

    enabled: bool = True
    apply_threshold: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Minimum probability to write; None: the model's own."
    )
    suggest_threshold: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Minimum probability to suggest; None: the model's own."
    )
    overwrite: Overwrite = "empty_or_default"
    fallback: str | None = Field(
        default=None, description="Value written when no label clears its threshold."
    )
    requires: list[str] = Field(
        default_factory=list,
        description="Fields whose write must not have been skipped for this one to be written.",
    )
    allowed: list[str] | None = Field(
        default=None, description="Optional allow-list, narrower than the ticket system's own choices."
    )

    @model_validator(mode="after")
    def _suggest_below_apply(self) -> FieldRule:
        if (
            self.apply_threshold is not None
            and self.suggest_threshold is not None
            and self.suggest_threshold > self.apply_threshold
        ):
            raise ValueError("suggest_threshold must not exceed apply_threshold")
        return self


def _default_fields() -> dict[str, FieldRule]:
    return {
        "group": FieldRule(),
        "priority": FieldRule(requires=["group"]),
        "type": FieldRule(),
    }


class ModelSettings(_Section):
    store: Path | str = Field(
        default=Path("data/models"),
        description="Local folder, or an object store URI (s3://bucket/prefix) every worker reaches: the same "
        "AWS environment variables as the lake give its endpoint and keys, never the URI. Workers download a "
        "version once into ~/.cache/triage/models (or $XDG_CACHE_HOME).",
    )
    base_encoder: str = Field(
        default="minilm", description="'minilm', 'e5-small', a local transformers folder, or a hub id."
    )
    max_length: int = Field(default=256, ge=16, le=8192)
    batch_tokens: int = Field(
        default=4096,
        ge=256,
        description="Token budget per batch (4,096 is fastest on CPU; raise it on a GPU).",
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["float32", "onnx-float32", "bfloat16", "int8"] = Field(
        default="float32",
        description="What the encoder runs in on CPU for prediction. 'onnx-float32': the same float32 numbers "
        "on ONNX Runtime's fused kernels (exported and checked against torch once per process, a few seconds; "
        "within the tolerance on real tickets). 'bfloat16': matrix products in bf16 under autocast, about 1.8x "
        "the encoder speed on CPUs with AVX512_BF16 or AMX (slower without), within the tolerance on the "
        "benchmark's tickets with little room (probabilities up to 0.016 apart). 'int8' (linear layers quantised) "
        "embeds about twice as fast but "
        "moved 2-7% of labels on real tickets in the tolerance check (needed: 99.5% identical, probabilities "
        "within 0.02); use it only where bench/inference.py shows it within tolerance.",
    )
    min_examples_per_class: int = Field(default=30, ge=1)
    target_precision: float = Field(default=0.90, gt=0.0, le=1.0)
    suggest_precision: float = Field(default=0.75, gt=0.0, le=1.0)
    fine_tune: bool = False
    seed: int = 42
    train_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Further options of triage.models.training.TrainConfig (head, hashing, ...) for the train flow.",
    )

    @field_validator("store", mode="before")
    @classmethod
    def _folder_or_uri(cls, store: Any) -> Any:
        """A URI stays text (a path would fold ``s3://`` into ``s3:/``); anything else is a folder. The URI
        itself is checked where the store is opened, as the lake's is (:func:`triage.lake.io.check_uri`)."""
        if isinstance(store, str) and "://" in store:
            return store.rstrip("/")
        return Path(store) if isinstance(store, str) else store


class PipelineSettings(_Section):
    mode: Mode = "shadow"
    lake: str = Field(
        default="data/lake",
        description="Local folder or a pyarrow filesystem URI (s3://bucket/prefix). An S3 endpoint, region "
        "and keys come from AWS_ENDPOINT_URL, AWS_DEFAULT_REGION and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
        "(or AWS_PROFILE), never from the URI.",
    )
    results: str | None = Field(
        default=None,
        description="Where Prefect keeps cached stage results (a folder or fsspec URL every worker reaches, "
        "so a retry on another worker reuses extract and predict); default `_prefect_results` in the lake. "
        "s3:// needs the `s3` extra (s3fs) and reads the same AWS variables as the lake.",
    )
    overlap_seconds: int = Field(
        default=120, ge=0, description="Re-read this much before the last watermark."
    )
    initial_lookback_hours: int = Field(
        default=24, ge=1, description="Window of the very first incremental run."
    )
    extract_batch_size: int = Field(default=1000, ge=1)
    bulk_update: bool = True
    triaged_tag: str | None = Field(
        default="ai-triaged",
        description="Tag added to every ticket triage writes (null: none).",
    )
    history_statuses: list[int] = Field(
        default_factory=lambda: [4, 5], description="Statuses whose values are labels."
    )
    history_days: int = Field(
        default=365, ge=1, description="How far back the train flow reads resolved tickets."
    )
    bulk_min_tickets: int = Field(
        default=2, ge=2, description="Tickets sharing one change set that go through one bulk update."
    )
    own_write_tolerance_seconds: int = Field(
        default=5,
        ge=0,
        description="Clock slack between triage and the ticket system (recognising our own writes, "
        "re-reads during push).",
    )
    push_reread_seconds: int = Field(
        default=30,
        ge=0,
        description="In suggest mode, re-read the tickets changed since the last read before the next "
        "batch of notes once this many seconds have passed (0: every batch). Field writes re-read "
        "their tickets right before every request.",
    )
    bulk_settle_seconds: int = Field(
        default=300,
        ge=0,
        description="A bulk write cut off by a crash is re-sent only after this long (its job may still run).",
    )
    lease_seconds: int = Field(
        default=60,
        ge=1,
        description="A pushing run holds the lake's lease, renewed every third of this; a crashed "
        "holder's lease expires after it.",
    )
    lease_wait_seconds: int = Field(
        default=120,
        ge=0,
        description="How long a run waits for another run's lease on the lake before it refuses (0: refuse at once).",
    )
    retain_parts_days: int = Field(
        default=8,
        ge=1,
        description="Parts that compaction merged stay readable (under `_retained/` in the lake) this many days, "
        "longer than cached stage results live (7 days), so a run retried from the Prefect UI still reads its "
        "stages' outputs; the nightly flow's vacuum deletes them after that.",
    )
    reuse_days: int = Field(
        default=3,
        ge=0,
        description="Predict reuses a prediction computed within this many days by the same model version for "
        "the same input (text, precision, device kind, top-k: the predictions' `input_hash`) instead of "
        "running the model again; it reads only these days' predictions (0: off, every prediction computed).",
    )
    dask_address: str | None = Field(
        default=None,
        description="Where predict computes its parts (2,000 tickets each) through prefect-dask: unset, in the "
        "run's own process; `local` (one worker per core) or a worker count such as `2`, a dask.distributed "
        "LocalCluster started for the stage; `tcp://host:8786`, an existing cluster whose workers reach the "
        "lake and the model store. Each worker process loads the model once.",
    )
    predict_deployment: str | None = Field(
        default=None,
        description="Run predict as a run of this deployment (`predict/predict`, on its own work pool, e.g. a "
        "GPU machine's) and wait for it; unset: predict runs in the triage run. Both pools must reach the "
        "lake, its cached results and the model store.",
    )

    @field_validator("dask_address", mode="before")
    @classmethod
    def _dask_address(cls, address: Any) -> Any:
        """``local``, a worker count (>= 1) or a scheduler URI (``tcp://host:port``)."""
        if address is None:
            return None
        text = str(address).strip()
        if text == "local" or "://" in text or (text.isdigit() and int(text) >= 1):
            return text
        raise ValueError("use local, a number of workers (2) or a scheduler address (tcp://host:8786)")

    @field_validator("triaged_tag")
    @classmethod
    def _freshdesk_tag(cls, tag: str | None) -> str | None:
        if tag is not None and (not tag.strip() or len(tag) > 32 or "," in tag):
            raise ValueError("a tag has 1 to 32 characters and no commas (null for no tag)")
        return tag


class Settings(_Section):
    """All of triage's settings. Build with :func:`load_settings`."""

    ticket_system: TicketSystemSettings = Field(default_factory=TicketSystemSettings)
    fields: dict[str, FieldRule] = Field(default_factory=_default_fields)
    model: ModelSettings = Field(default_factory=ModelSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)

    @field_validator("fields")
    @classmethod
    def _known_requirements(cls, fields: dict[str, FieldRule]) -> dict[str, FieldRule]:
        for name, rule in fields.items():
            for other in rule.requires:
                if other not in fields:
                    raise ValueError(f"{name}.requires names {other!r}, which is not a triaged field")
        return fields

    @model_validator(mode="after")
    def _account_paths(self) -> Settings:
        """The one place an account is resolved: its lake, store and cached results under the configured roots
        (every stage and command opens them from here; a snapshot validated again is left as it is)."""
        account = self.ticket_system.account
        if account is not None:
            self.pipeline.lake = account_path(self.pipeline.lake, account)
            self.model.store = account_path(self.model.store, account)
            if self.pipeline.results is not None:
                self.pipeline.results = account_path(self.pipeline.results, account)
        return self

    def enabled_fields(self) -> list[str]:
        return [name for name, rule in self.fields.items() if rule.enabled]


@overload
def account_path(root: str, account: str) -> str: ...
@overload
def account_path(root: Path | str, account: str) -> Path | str: ...
def account_path(root: Path | str, account: str) -> Path | str:
    """``root/account=<account>`` (a URI stays text, a folder a path), or ``root`` if it already is that."""
    segment = f"account={account}"
    if isinstance(root, Path):
        return root if root.name == segment else root / segment
    text = root.rstrip("/")
    return text if text.rsplit("/", 1)[-1] == segment else f"{text}/{segment}"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file (is it the right file?)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML{_yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


_QUOTED = re.compile(r"'([^'<][^']{2,})'")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what, without PyYAML's snippet of the line (it may be the API key's line).

    Names PyYAML quotes (an alias, an anchor, a tag) are masked too: they come from the file.
    """
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = _QUOTED.sub("'...'", exc.problem or "syntax error")
        return f" at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    if isinstance(exc, yaml.reader.ReaderError):
        return f": {exc.reason} at byte {exc.position}"
    return ""


def _describe(exc: ValidationError, source: str) -> str:
    return "\n".join([f"invalid configuration ({source}):", *(f"  {p}" for p in validation_problems(exc))])


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read ``path`` (else ``$TRIAGE_CONFIG``, else ``./config.yml`` if present), then the environment.

    Environment variables override the file key by key: ``TRIAGE_PIPELINE__MODE=apply`` sets
    ``pipeline.mode``; values are parsed as YAML scalars (``0.9``, ``true``, ``[4, 5]``).
    ``FRESHDESK_API_KEY`` fills ``ticket_system.freshdesk_api_key``, ``FRESHDESK_API_KEY_SECRET_BLOCK``
    ``ticket_system.credentials_block`` (a flow run loads that block's key: see
    :func:`triage.flows.common.run_settings`). Keyword ``overrides`` win over all.
    Raises :class:`ConfigError` naming every invalid key.
    """
    explicit = path or os.environ.get(CONFIG_ENV)
    file = Path(explicit) if explicit else DEFAULT_CONFIG
    if explicit and not file.is_file():
        raise ConfigError(f"config file not found: {file}")
    data = _read_yaml(file) if file.is_file() else {}
    if "fields" not in data:  # the triaged set defaults as a whole; env may then tune single fields
        data["fields"] = {name: rule.model_dump() for name, rule in _default_fields().items()}
    source = str(file) if file.is_file() else "defaults and environment"
    data = _deep_merge(data, _env_overrides())
    data = _deep_merge(data, overrides)
    _register_secrets(data.get("ticket_system"))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None


def _register_secrets(section: Any) -> None:
    """Mask the credentials of ``section`` in every error and log line, wherever they are pasted."""
    if isinstance(section, dict):
        for key, value in section.items():
            if is_secret_key(str(key)) and isinstance(value, str):
                register_secret(value)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _env_overrides() -> dict[str, Any]:
    out: dict[str, Any] = {}
    api_key, block = os.environ.get(API_KEY_ENV), os.environ.get(SECRET_BLOCK_ENV)
    if api_key:
        out.setdefault("ticket_system", {})[API_KEY_SETTING] = api_key
    if block:
        out.setdefault("ticket_system", {})["credentials_block"] = block
    for name, value in os.environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV or name in DEPLOYMENT_ENV:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value if is_secret_key(path[-1]) else _scalar(value)
    return out


def _scalar(value: str) -> Any:
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value
