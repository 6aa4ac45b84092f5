"""Settings of one simulated Freshdesk account: size, seed, plan limits, faults, quirks."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

Plan = Literal["growth", "pro", "enterprise", "trial", "custom", "unlimited"]
FaultKind = Literal["error", "drop", "malformed", "storm", "latency"]
#: The busiest agents the simulator keeps up with (1,000 edits a second).
MAX_EDITS_PER_MINUTE = 60_000


@dataclass(frozen=True)
class RateLimits:
    """Per-window limits: ``total`` in credits, the sub-limits in calls (``None``: no sub-limit)."""

    total: int
    tickets_list: int | None = None
    ticket_update: int | None = None
    ticket_create: int | None = None


#: Freshdesk's per-minute limits by plan (reference §3.1). Trial accounts have only a total.
PLAN_LIMITS: dict[str, RateLimits] = {
    "growth": RateLimits(total=200, tickets_list=20, ticket_update=80, ticket_create=80),
    "pro": RateLimits(total=400, tickets_list=100, ticket_update=160, ticket_create=160),
    "enterprise": RateLimits(total=700, tickets_list=200, ticket_update=280, ticket_create=280),
    "trial": RateLimits(total=50),
}


@dataclass(frozen=True)
class FaultRule:
    """One injected fault. Exactly one trigger applies: the ``next`` K matching requests, ``every``
    Nth matching request, or a fraction ``rate`` of them (seeded); with none, every matching request.

    Kinds: ``error`` answers ``status`` (5xx) with Freshdesk's 500 body (``after=True``: once the
    request has been processed, as a gateway timing out on a write that took effect); ``drop``
    closes the connection without a response (``after=True``: the request is processed first, so a
    write takes effect and its answer is lost); ``malformed`` processes the request and sends truncated JSON;
    ``storm`` answers 429 with ``Retry-After: retry_after``; ``latency`` delays by ``seconds``.
    ``method`` and ``path`` (a substring of the path after ``/api/v2``) narrow what matches.
    """

    kind: FaultKind
    next: int | None = None
    every: int | None = None
    rate: float | None = None
    status: int = 500
    retry_after: int = 1
    seconds: float = 0.0
    after: bool = False
    method: str | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in get_args(FaultKind):
            raise ValueError(f"unknown fault kind {self.kind!r} (one of {', '.join(get_args(FaultKind))})")
        triggers = [t for t in (self.next, self.every, self.rate) if t is not None]
        if len(triggers) > 1:
            raise ValueError("a fault rule takes at most one of next, every, rate")
        if self.next is not None and self.next < 1:
            raise ValueError("next must be >= 1")
        if self.every is not None and self.every < 1:
            raise ValueError("every must be >= 1")
        if self.rate is not None and not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be within 0..1")
        if self.kind == "error" and not 500 <= self.status <= 599:
            raise ValueError("an error fault's status must be 5xx")
        if self.kind == "latency" and self.seconds <= 0:
            raise ValueError("a latency fault needs seconds > 0")
        if self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything that shapes a simulated account. All fields have working defaults.

    Seeding: ``tickets`` in all, of which ``open_tickets`` are new and untriaged (status 2, no group,
    priority Low, no type, no product: their true labels are hidden). The rest is history
    (mostly resolved/closed with the agents' values set), some in progress, some spam or deleted.
    With ``data`` (a CSV or Parquet of labelled tickets) the texts and labels come from that file
    (``tickets=None`` takes every row); otherwise from the seeded generator.

    A busy helpdesk: ``open_preset_fraction`` of the open tickets arrive with values already set
    by their requester (priority, type) or an agent (group, type, tags, a deliberate Low), logged in
    :attr:`~triage.simulator.Simulator.changes`; ``agent_edits_per_minute`` agents edit
    unresolved tickets while the server runs; ``clock_offset_seconds`` puts the simulator's clock
    ahead of this machine's (negative: behind).
    """

    api_key: str = field(default_factory=lambda: "sim-" + secrets.token_hex(12))
    restricted_api_keys: tuple[str, ...] = ()
    seed: int = 42
    tickets: int | None = 2000
    open_tickets: int = 200
    data: Path | None = None
    history_days: int = 180
    open_within_hours: float = 12.0
    spam_fraction: float = 0.01
    deleted_fraction: float = 0.01
    plan: Plan = "unlimited"
    limits: RateLimits | None = None
    window_seconds: float = 60.0
    required_for_agents: tuple[str, ...] = ()
    required_for_closure: tuple[str, ...] = ()
    bulk_delay_seconds: float = 0.5
    faults: tuple[FaultRule, ...] = ()
    host: str = "127.0.0.1"
    port: int = 0
    domain: str = "simulator"
    open_preset_fraction: float = 0.0
    agent_edits_per_minute: float = 0.0
    clock_offset_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.tickets is not None and self.tickets < 1:
            raise ValueError("tickets must be >= 1")
        if self.open_tickets < 0 or (self.tickets is not None and self.open_tickets > self.tickets):
            raise ValueError("open_tickets must be within 0..tickets")
        if self.plan == "custom" and self.limits is None:
            raise ValueError("plan 'custom' needs limits=RateLimits(...)")
        if self.plan not in (*PLAN_LIMITS, "custom", "unlimited"):
            raise ValueError(f"unknown plan {self.plan!r}")
        if self.window_seconds <= 0:
            raise ValueError("window_seconds must be > 0")
        if not self.api_key:
            raise ValueError("api_key must not be empty")
        if not 0.0 <= self.open_preset_fraction <= 1.0:
            raise ValueError("open_preset_fraction must be within 0..1")
        if not 0 <= self.agent_edits_per_minute <= MAX_EDITS_PER_MINUTE:
            raise ValueError(f"agent_edits_per_minute must be within 0..{MAX_EDITS_PER_MINUTE}")
        for name in (*self.required_for_agents, *self.required_for_closure):
            if name not in ("group", "type", "cf_product", "cf_order_number"):
                raise ValueError(f"unknown field {name!r} (group, type, cf_product or cf_order_number)")
        if self.data is not None:
            object.__setattr__(self, "data", Path(self.data))

    def rate_limits(self) -> RateLimits | None:
        """The limits in force: explicit ``limits`` win over the plan's; ``None`` means unlimited."""
        if self.limits is not None:
            return self.limits
        return PLAN_LIMITS.get(self.plan)
