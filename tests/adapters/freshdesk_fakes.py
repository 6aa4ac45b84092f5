"""Test doubles for the Freshdesk adapter tests: a fake clock, canned JSON, a small fake Freshdesk."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx

API_KEY = "sEcReTkEy-0123456789abcdef"
BASE = "https://acme.freshdesk.com/api/v2"
T0 = datetime(2024, 5, 1, tzinfo=UTC)


class FakeTime:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def ticket_json(ticket_id: int, updated_at: datetime = T0, **overrides: Any) -> dict[str, Any]:
    """A ticket as Freshdesk lists it with include=description."""
    stamp = updated_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "id": ticket_id,
        "subject": f"Subject {ticket_id}",
        "description": f"<div>Body {ticket_id}</div>",
        "description_text": f"Body {ticket_id}",
        "status": 2,
        "priority": 1,
        "group_id": None,
        "type": None,
        "responder_id": None,
        "requester_id": 67000000001,
        "source": 1,
        "tags": [],
        "custom_fields": {"cf_product": None},
        "spam": False,
        "cc_emails": None,
        "created_at": stamp,
        "updated_at": stamp,
    }
    body.update(overrides)
    return body


TICKET_FIELDS = [
    {"id": 1, "name": "priority", "label": "Priority", "type": "default_priority",
     "required_for_agents": False, "choices": {"Low": 1, "Medium": 2, "High": 3, "Urgent": 4}},
    {"id": 2, "name": "ticket_type", "label": "Type", "type": "default_ticket_type",
     "required_for_agents": False, "choices": ["Question", "Incident", "Problem", "Feature Request"]},
    {"id": 3, "name": "status", "label": "Status", "type": "default_status", "required_for_agents": True,
     "choices": {"2": ["Open", "Being Processed"], "3": ["Pending", "Awaiting"], "4": ["Resolved", "x"],
                 "5": ["Closed", "x"], "6": ["Waiting on Customer", "Awaiting your Reply"]}},
    {"id": 4, "name": "group", "label": "Group", "type": "default_group", "required_for_agents": False,
     "choices": {"Billing": 67000000010, "R&amp;D": 67000000011}},
    {"id": 5, "name": "cf_product", "label": "Product", "type": "custom_dropdown",
     "required_for_agents": False, "choices": ["Payments", "Mobile App", "API"]},
    {"id": 6, "name": "cf_order_number", "label": "Order", "type": "custom_text",
     "required_for_agents": False},
]  # fmt: skip
GROUPS = [
    {"id": 67000000010, "name": "Billing"},
    {"id": 67000000011, "name": "R&D"},
    {"id": 67000000012, "name": "Technical Support"},
]


def headers(request_id: str = "req-1", **extra: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json; charset=utf-8",
        "X-Request-Id": request_id,
        "X-RateLimit-Total": "200",
        "X-RateLimit-Remaining": "190",
        "X-RateLimit-Used-CurrentRequest": "1",
        **extra,
    }


def respond(status: int = 200, body: Any = None, **extra_headers: str) -> httpx.Response:
    content = b"" if body is None else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers=headers(**extra_headers))


class FakeFreshdesk:
    """Serves ``GET /tickets`` like Freshdesk over a list of ticket dicts (``max_page`` cap included);
    with ``now``, its answers carry that clock as their ``Date``."""

    def __init__(
        self, tickets: list[dict[str, Any]], *, max_page: int = 300, now: datetime | None = None
    ) -> None:
        self.tickets = sorted(tickets, key=lambda t: (t["updated_at"], t["id"]))
        self.max_page = max_page
        self.now = now
        self.list_params: list[dict[str, str]] = []

    def edit(self, ticket_id: int, updated_at: datetime) -> None:
        """An agent's edit: the ticket moves to ``updated_at`` in the order."""
        (row,) = [t for t in self.tickets if t["id"] == ticket_id]
        self.tickets.remove(row)
        moved = ticket_json(ticket_id, updated_at, created_at=row["created_at"])
        self.tickets = sorted([*self.tickets, moved], key=lambda t: (t["updated_at"], t["id"]))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        self.list_params.append(params)
        page, per_page = int(params["page"]), int(params["per_page"])
        if page > self.max_page:
            return respond(400, {"description": "Validation failed", "errors": [{
                "field": "page", "code": "invalid_value",
                "message": "You cannot access tickets beyond the 300th page. Please provide a smaller page number.",
            }]})  # fmt: skip
        rows = [t for t in self.tickets if t["updated_at"] >= params["updated_since"]]
        chunk = rows[(page - 1) * per_page : page * per_page + 1]
        extra = {} if self.now is None else {"Date": format_datetime(self.now, usegmt=True)}
        if len(chunk) > per_page:
            extra["Link"] = f'<{BASE}/tickets?page={page + 1}>; rel="next"'
        return respond(200, chunk[:per_page], **extra)


def spread(count: int, *, start: datetime = T0, step: Callable[[int], int] = lambda i: i) -> list[dict]:
    """``count`` tickets, ticket ``i`` updated ``step(i)`` seconds after ``start``."""
    return [ticket_json(i + 1, start + timedelta(seconds=step(i))) for i in range(count)]
