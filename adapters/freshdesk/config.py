"""The Freshdesk adapter's settings (the keys under ``ticket_system`` in config.yml) and plan limits."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

Plan = Literal["growth", "pro", "enterprise", "trial", "custom"]

#: Sub-limit buckets (counted in calls, not credits), as Freshdesk names them.
TICKETS_LIST = "tickets_list"
TICKET_UPDATE = "ticket_update"
TICKET_CREATE = "ticket_create"


@dataclass(frozen=True)
class RateLimits:
    """Per-window limits: ``total`` in credits, ``sublimits`` in calls per bucket."""

    total: int
    sublimits: dict[str, int]
    window_seconds: float


#: Per-minute limits by plan (reference §3.1). Trial accounts get 50 calls in all; their
#: sub-limits are not published, so the total is the only limit.
PLAN_LIMITS: dict[str, tuple[int, dict[str, int]]] = {
    "growth": (200, {TICKETS_LIST: 20, TICKET_UPDATE: 80, TICKET_CREATE: 80}),
    "pro": (400, {TICKETS_LIST: 100, TICKET_UPDATE: 160, TICKET_CREATE: 160}),
    "enterprise": (700, {TICKETS_LIST: 200, TICKET_UPDATE: 280, TICKET_CREATE: 280}),
    "trial": (50, {}),
}

_SUBDOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_MISSING_KEY = (
    "the Freshdesk API key is missing: set the FRESHDESK_API_KEY environment variable "
    "(or ticket_system.freshdesk_api_key in config.yml)"
)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FreshdeskConfig(BaseModel):
    """Settings of :class:`~triage.adapters.freshdesk.FreshdeskAdapter`.

    Give ``freshdesk_domain`` (``acme`` or ``acme.freshdesk.com``) or an explicit ``base_url``
    (e.g. a local simulator's ``http://127.0.0.1:8765/api/v2``). The key comes from
    ``FRESHDESK_API_KEY``; it is held as a secret and never rendered.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    freshdesk_domain: str | None = Field(
        default=None, description="Helpdesk subdomain: 'acme' or 'acme.freshdesk.com'."
    )
    freshdesk_api_key: SecretStr | None = Field(
        default=None, validate_default=True, description="API key of the agent the pipeline acts as."
    )
    base_url: str | None = Field(
        default=None, description="Explicit API base ending in /api/v2; overrides freshdesk_domain."
    )
    plan: Plan = Field(default="growth", description="Freshdesk plan: gives the per-window rate limits.")
    rate_limit_total: int | None = Field(
        default=None, ge=1, description="Credits per window (overrides the plan's)."
    )
    rate_limit_tickets_list: int | None = Field(
        default=None, ge=1, description="Ticket-list calls per window."
    )
    rate_limit_ticket_update: int | None = Field(
        default=None, ge=1, description="Ticket-update calls per window."
    )
    rate_limit_ticket_create: int | None = Field(
        default=None, ge=1, description="Ticket-create calls per window."
    )
    rate_window_seconds: float = Field(
        default=60.0, gt=0, description="Length of the rate-limit window (Freshdesk: one minute)."
    )
    timeout_seconds: float = Field(default=30.0, gt=0, description="Read/write timeout of one request.")
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    max_retries: int = Field(
        default=4, ge=0, description="Retries on 5xx, timeouts, dropped connections and bad JSON."
    )
    backoff_base_seconds: float = Field(default=0.5, ge=0, description="First retry delay (doubles).")
    backoff_max_seconds: float = Field(default=30.0, ge=0)
    rate_limit_max_wait_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Longest total wait on 429s for one request before RateLimitedError "
        "(default: 10 rate windows).",
    )
    enforce_mandatory: bool = Field(
        default=True, description="False sends ?enforce_mandatory=false on updates."
    )
    bulk_poll_interval_seconds: float = Field(default=2.0, gt=0)
    bulk_timeout_seconds: float = Field(default=300.0, gt=0)

    @field_validator("freshdesk_domain")
    @classmethod
    def _subdomain(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host = value.strip().lower()
        if "://" in host:
            host = urlsplit(host).hostname or ""
        host = host.rstrip("/")
        if host.endswith(".freshdesk.com"):
            host = host.removesuffix(".freshdesk.com")
        if not _SUBDOMAIN.match(host):
            raise ValueError(
                "expected the helpdesk subdomain, e.g. 'acme' or 'acme.freshdesk.com' "
                "(API v2 works only on *.freshdesk.com; use base_url for anything else)"
            )
        return host

    @field_validator("freshdesk_api_key")
    @classmethod
    def _key_present(cls, value: SecretStr | None) -> SecretStr:
        if value is None or not value.get_secret_value().strip():
            raise ValueError(_MISSING_KEY)
        secret = value.get_secret_value()
        if any(c.isspace() for c in secret) or ":" in secret:
            raise ValueError("the Freshdesk API key must not contain spaces or ':' (check FRESHDESK_API_KEY)")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http(s) URL such as https://acme.freshdesk.com/api/v2")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; the API key comes from FRESHDESK_API_KEY")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ValueError(
                "must use https:// (the API key travels in every request); "
                "http:// is allowed only on loopback (127.0.0.1, ::1, localhost) for a local simulator"
            )
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query string or fragment")
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _where_and_how_fast(self) -> FreshdeskConfig:
        if self.freshdesk_domain is None and self.base_url is None:
            raise ValueError("set freshdesk_domain (e.g. 'acme') or base_url")
        if self.plan == "custom" and self.rate_limit_total is None:
            raise ValueError("plan 'custom' needs rate_limit_total (credits per window)")
        return self

    @property
    def api_base(self) -> str:
        """The API root every path hangs off, without a trailing slash."""
        return self.base_url or f"https://{self.freshdesk_domain}.freshdesk.com/api/v2"

    @property
    def api_key(self) -> str:
        """The key itself. Only the HTTP client's auth should read this."""
        assert self.freshdesk_api_key is not None  # guaranteed by validation
        return self.freshdesk_api_key.get_secret_value()

    def rate_limits(self) -> RateLimits:
        """The plan's limits with any explicit overrides applied."""
        total, sublimits = PLAN_LIMITS.get(self.plan, (0, {}))
        sublimits = dict(sublimits)
        for bucket, override in (
            (TICKETS_LIST, self.rate_limit_tickets_list),
            (TICKET_UPDATE, self.rate_limit_ticket_update),
            (TICKET_CREATE, self.rate_limit_ticket_create),
        ):
            if override is not None:
                sublimits[bucket] = override
        return RateLimits(
            total=self.rate_limit_total or total,
            sublimits=sublimits,
            window_seconds=self.rate_window_seconds,
        )

    @property
    def total_is_explicit(self) -> bool:
        """Whether the total limit was set by hand (then the server's header never raises it)."""
        return self.rate_limit_total is not None
