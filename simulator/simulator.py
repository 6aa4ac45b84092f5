"""The simulated Freshdesk account: request handling plus the state tests and the demo inspect.

:meth:`Simulator.handle` is what the HTTP server calls for every ``/api/v2`` request, in this
order: injected faults, the account's rate limit (every request to the account counts, invalid
ones too), routing (404 with an empty body), Basic auth (401, or 403 for a restricted key), the
endpoint. It also keeps the write log, request counters and applies due bulk jobs. All state
access goes through one lock, so the object is safe to use from tests while a server thread runs.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import random
import re
import threading
from collections import Counter
from dataclasses import replace
from email.utils import formatdate
from typing import Any

from triage.simulator.account import PRIORITIES, STATUSES
from triage.simulator.agents import AgentLoop, pick_unresolved, random_edit
from triage.simulator.api import ApiRequest, FreshdeskApi, Route, credits_for, match_route
from triage.simulator.bulk import job_json
from triage.simulator.config import SimulatorConfig
from triage.simulator.faults import FaultInjector, FaultPlan
from triage.simulator.generator import generate_ticket
from triage.simulator.ratelimit import RateLimiter
from triage.simulator.responses import (
    ACCESS_DENIED,
    INVALID_CREDENTIALS,
    RATE_LIMITED,
    ApiResponse,
    empty,
    json_response,
    request_error,
    server_error,
)
from triage.simulator.seeding import Seed, build_seed, labelled_texts, true_labels, untriaged_ticket
from triage.simulator.store import ChangeRecord, Clock, TicketStore, WriteRecord
from triage.simulator.tickets import full_view
from triage.simulator.timeutil import format_ts

log = logging.getLogger(__name__)

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
Routed = tuple[Route, re.Match[str]]
API_VERSION = "latest=v2; requested=v2"


class Simulator:
    """One simulated account. Build it, then serve it with :func:`~triage.simulator.run_simulator`
    (which sets :attr:`base_url`) or call :meth:`handle` directly."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.base_url: str | None = None
        self._lock = threading.RLock()
        self.clock = Clock(self.config.clock_offset_seconds)
        self.faults = FaultInjector(self.config.faults, seed=self.config.seed)
        self.limiter = RateLimiter(self.config.rate_limits(), self.config.window_seconds)
        #: Agents editing unresolved tickets on a thread; the server starts them at the configured rate.
        self.agents = AgentLoop(self.random_agent_edit)
        self._load()

    def _load(self) -> None:
        texts, self._spare_texts = labelled_texts(self.config)
        seed: Seed = build_seed(self.config, self.clock.now(), texts)
        self.store = TicketStore(seed.account, seed.tickets, self.clock)
        self.store.changes.extend(seed.changes)
        self._truth = seed.truth
        self._true_tags = seed.true_tags
        self.api = FreshdeskApi(self.store, self.config.bulk_delay_seconds)
        self._text_rng = random.Random(self.config.seed + 7)
        self._agent_rng = random.Random(self.config.seed + 11)
        self._by_status: Counter[str] = Counter()
        self._by_route: Counter[str] = Counter()

    @property
    def api_key(self) -> str:
        return self.config.api_key

    # -- request handling ------------------------------------------------------------------------

    def handle(self, req: ApiRequest) -> ApiResponse:
        """Answer one ``/api/v2`` request (``req.path`` relative to ``/api/v2``)."""
        with self._lock:
            self.api.run_due_jobs(self.clock.time())
            plan = self.faults.plan(req.method, req.path)
            routed = match_route(req.path)
            response = self._answer(req, plan, routed)
            response.delay = plan.delay
            response.headers.setdefault("Content-Type", "application/json; charset=utf-8")
            response.headers["X-Freshdesk-API-Version"] = API_VERSION
            response.headers["X-Request-Id"] = req.request_id
            response.headers["Cache-Control"] = "no-cache, no-store, max-age=0, must-revalidate"
            response.headers["Date"] = formatdate(self.clock.now(), usegmt=True)  # the account's clock
            self._by_status["dropped" if response.drop else str(response.status)] += 1
            route_name = routed[0].template if routed else "(unknown)"
            self._by_route[f"{req.method} {route_name}"] += 1
            if req.method in WRITE_METHODS:
                self._log_write(req, response)
            return response

    def _answer(self, req: ApiRequest, plan: FaultPlan, routed: Routed | None) -> ApiResponse:
        if plan.storm_retry_after is not None:
            return json_response(429, {"message": RATE_LIMITED}, {"Retry-After": str(plan.storm_retry_after)})
        if plan.drop_before:
            return ApiResponse(0, drop=True)
        if plan.error_status is not None and not plan.error_after:
            return server_error(plan.error_status)
        route = routed[0] if routed else None
        cost = credits_for(req, route) if route else 1
        sub_limit = route.sub_limit.get(req.method) if route else None
        verdict = self.limiter.charge(cost, sub_limit)
        if not verdict.allowed:
            return json_response(429, {"message": RATE_LIMITED}, {"Retry-After": str(verdict.retry_after)})
        response = self._authorised(req, routed)
        if plan.error_status is not None:  # a gateway error after the account acted on the request
            response = server_error(plan.error_status)
        response.headers["X-RateLimit-Total"] = str(verdict.total)
        response.headers["X-RateLimit-Remaining"] = str(verdict.remaining)
        response.headers["X-RateLimit-Used-CurrentRequest"] = str(verdict.cost)
        if plan.malformed:  # half a JSON document never parses; tiny bodies become '{"'
            half = response.body[: len(response.body) // 2]
            response.body = half if len(half) >= 2 else b'{"'

        response.drop = plan.drop_after
        return response

    def _authorised(self, req: ApiRequest, routed: Routed | None) -> ApiResponse:
        if routed is None:
            return empty(404)
        key = basic_username(req.headers.get("authorization", ""))
        if key is None or (key != self.config.api_key and key not in self.config.restricted_api_keys):
            return request_error(401, "invalid_credentials", INVALID_CREDENTIALS)
        route, matched = routed
        if key != self.config.api_key and not (req.method == "GET" and req.path == "/agents/me"):
            return request_error(403, "access_denied", ACCESS_DENIED)
        try:
            return self.api.dispatch(req, route, matched)
        except Exception:  # a simulator bug must answer like a server error, not kill the connection
            log.exception("simulator error on %s %s", req.method, req.path)
            return server_error()

    def _log_write(self, req: ApiRequest, response: ApiResponse) -> None:
        try:
            body: Any = json.loads(req.body) if req.body.strip() else None
        except (ValueError, UnicodeDecodeError):
            body = req.body.decode("utf-8", "replace")
        record = WriteRecord(
            time=format_ts(self.clock.now()) or "",
            method=req.method,
            path="/api/v2" + req.path,
            query=req.raw_query,
            body=body,
            status=response.status,
            request_id=req.request_id,
            dropped=response.drop,
        )
        self.store.writes.append(record)

    # -- state for tests, the demo and the admin API ---------------------------------------------

    def _settle(self) -> None:
        self.api.run_due_jobs(self.clock.time())

    def truth(self) -> dict[int, dict[str, str]]:
        """Hidden true labels of the seeded open tickets: ``{id: {group, priority, type, cf_product}}``."""
        with self._lock:
            return {tid: dict(labels) for tid, labels in self._truth.items()}

    def true_tags(self) -> dict[int, tuple[str, ...]]:
        """Hidden tags an agent would give each open ticket (the history's tags follow the same rule)."""
        with self._lock:
            return dict(self._true_tags)

    @property
    def writes(self) -> list[WriteRecord]:
        """Every write request received, oldest first (rejected, faulted and dropped ones too)."""
        with self._lock:
            self._settle()
            return list(self.store.writes)

    @property
    def changes(self) -> list[ChangeRecord]:
        """Every effective ticket change, oldest first, with its source (``api``, ``bulk``, ``agent``,
        ``requester`` or ``note``) and, for an agent's or requester's, their id (``actor``)."""
        with self._lock:
            self._settle()
            return list(self.store.changes)

    def ticket(self, ticket_id: int) -> dict[str, Any]:
        """A ticket as ``GET /tickets/{id}`` shows it (KeyError if there is none)."""
        with self._lock:
            self._settle()
            return full_view(self.store.tickets[ticket_id])

    def ticket_ids(self) -> list[int]:
        with self._lock:
            return sorted(self.store.tickets)

    def job(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            self._settle()
            return job_json(self.store.jobs[job_id])

    def labels(self) -> dict[str, list[str]]:
        """The account's label sets: group names, priorities, types, statuses and dropdown choices."""
        with self._lock:
            account = self.store.account
        out = {
            "group": list(account.groups.values()),
            "priority": list(PRIORITIES),
            "type": list(account.ticket_types),
            "status": [name for name, _ in STATUSES.values()],
        }
        for name, spec in account.custom_fields.items():
            if spec.type == "custom_dropdown":
                out[name] = list(spec.choices)
        return out

    def agent_edit(
        self, ticket_id: int, *, agent_id: int | None = None, **changes: Any
    ) -> dict[str, tuple[Any, Any]]:
        """Change a ticket as an agent in the UI would (not through the API); bumps ``updated_at``.

        Keys: ``group`` (name) or ``group_id``, ``priority`` (label or 1-4), ``type``, ``status``,
        ``responder_id``, ``subject``, ``tags`` (replace), ``spam``, ``deleted``, and custom fields by
        name (``cf_product="Mobile App"``); ``agent_id`` names the agent in the change log. Returns
        ``{field: (old, new)}``; ValueError on bad input.
        """
        with self._lock:
            ticket = self.store.tickets.get(ticket_id)
            if ticket is None:
                raise KeyError(f"no ticket {ticket_id}")
            if agent_id is not None and agent_id not in self.store.account.agents:
                raise ValueError(f"agent_id {agent_id!r} is not an agent of the account")
            values = self._native_values(changes)
            return self.store.apply(ticket, values, source="agent", actor=agent_id)

    def random_agent_edit(self) -> ChangeRecord | None:
        """One agent's edit of a random unresolved ticket (see :mod:`triage.simulator.agents`);
        ``None`` when no ticket is unresolved."""
        with self._lock:
            ticket = pick_unresolved(self.store, self._agent_rng)
            if ticket is None:
                return None
            values, agent_id = random_edit(ticket, self.store.account, self._agent_rng)
            changed = self.store.apply(ticket, values, source="agent", actor=agent_id)
            return self.store.changes[-1] if changed else None

    def _native_values(self, changes: dict[str, Any]) -> dict[str, Any]:
        account = self.store.account
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if name == "group":
                try:
                    values["group_id"] = None if value is None else account.group_id(str(value))
                except KeyError:
                    raise ValueError(
                        f"group {value!r} is not one of {list(account.groups.values())}"
                    ) from None
            elif name == "priority":
                values["priority"] = PRIORITIES[value] if isinstance(value, str) else int(value)
                if values["priority"] not in PRIORITIES.values():
                    raise ValueError(f"priority {value!r} is not 1-4 or a label")
            elif name == "type":
                values["type"] = None if value is None else account.canonical_type(str(value))
                if value is not None and values["type"] is None:
                    raise ValueError(f"type {value!r} is not one of {account.ticket_types}")
            elif name == "status":
                if value not in STATUSES:
                    raise ValueError(f"status {value!r} is not one of {list(STATUSES)}")
                values["status"] = value
            elif name in ("group_id", "responder_id", "subject", "spam", "deleted"):
                values[name] = value
            elif name == "tags":
                values["tags"] = list(value)
            elif name in account.custom_fields:
                values.setdefault("custom_fields", {})[name] = value
            else:
                raise ValueError(f"agent_edit cannot change {name!r}")
        return values

    def add_tickets(self, count: int) -> list[int]:
        """``count`` new open, untriaged tickets (created now, hidden labels in :meth:`truth`)."""
        if count < 1:
            raise ValueError("count must be >= 1")
        with self._lock:
            account = self.store.account
            if self.config.data is not None and len(self._spare_texts) < count:
                raise ValueError(f"only {len(self._spare_texts)} unused rows left in {self.config.data}")
            ids = []
            for _ in range(count):
                text = self._spare_texts.pop() if self.config.data else generate_ticket(self._text_rng)
                requester_id = self._text_rng.choice(list(account.contacts))
                ticket = untriaged_ticket(
                    self.store.next_ticket_id(),
                    text,
                    account,
                    requester_id,
                    created_at=self.clock.now(),
                    source=1,
                )
                self.store.add(ticket)
                self._truth[ticket.id] = true_labels(text)
                self._true_tags[ticket.id] = text.tags
                ids.append(ticket.id)
            return ids

    def set_rate_limits(
        self, plan: str | None = None, *, limits: Any = None, window_seconds: float | None = None
    ) -> None:
        """Change the plan, explicit :class:`RateLimits` or the window length at run time."""
        with self._lock:
            changes: dict[str, Any] = {}
            if plan is not None:
                changes["plan"] = plan
                changes["limits"] = limits
            elif limits is not None:
                changes.update(plan="custom", limits=limits)
            if window_seconds is not None:
                changes["window_seconds"] = window_seconds
            self.config = replace(self.config, **changes)
            self.limiter.configure(self.config.rate_limits(), self.config.window_seconds)

    def agents_status(self) -> dict[str, Any]:
        """The agents' rate (0: not at work) and the edits agents have made so far."""
        with self._lock:
            edits = sum(change.source == "agent" for change in self.store.changes)
        return {"edits_per_minute": self.agents.per_minute, "running": self.agents.running, "edits": edits}

    def set_clock_offset(self, seconds: float) -> None:
        """Put the simulator's clock ``seconds`` ahead of this machine's (negative: behind)."""
        with self._lock:
            self.clock.offset = float(seconds)

    def advance_clock(self, seconds: float) -> None:
        """Move the simulator's wall clock forward (ticket timestamps, bulk job delays)."""
        with self._lock:
            self.clock.advance(seconds)

    def reset(self) -> None:
        """Reseed from the configuration: clears logs, counters, jobs, the rate window; the clock
        offset and faults go back to the configured ones (agents at work keep working)."""
        with self._lock:
            self.clock.offset = self.config.clock_offset_seconds
            self.faults.clear()
            for rule in self.config.faults:
                self.faults.add(rule)
            self.limiter.configure(self.config.rate_limits(), self.config.window_seconds)
            self._load()

    def stats(self) -> dict[str, Any]:
        """Request counters by status and route, rate-limit usage, ticket and job counts."""
        with self._lock:
            self._settle()
            tickets = self.store.tickets.values()
            return {
                "requests": sum(self._by_status.values()),
                "by_status": dict(self._by_status),
                "by_route": dict(self._by_route),
                "writes": len(self.store.writes),
                "rate_limit": self.limiter.snapshot(),
                "tickets": {
                    "total": len(self.store.tickets),
                    "spam": sum(t.spam for t in tickets),
                    "deleted": sum(t.deleted for t in tickets),
                    "open_with_hidden_labels": len(self._truth),
                },
                "jobs": dict(Counter(j.status for j in self.store.jobs.values())),
                "faults": self.faults.rules(),
                "agents": self.agents_status(),
            }


def basic_username(header: str) -> str | None:
    """The username of a Basic ``Authorization`` header (the API key), or ``None``."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, _, _ = decoded.partition(":")
    return username or None
