"""The simulated account's metadata: groups, agents, contacts, companies and ticket fields."""

from __future__ import annotations

import html
import random
from dataclasses import dataclass, field
from typing import Any

from triage.simulator.timeutil import format_ts

STATUSES: dict[int, tuple[str, str]] = {
    2: ("Open", "Being Processed"),
    3: ("Pending", "Awaiting your Reply"),
    4: ("Resolved", "This ticket has been Resolved"),
    5: ("Closed", "This ticket has been Closed"),
    6: ("Waiting on Customer", "Awaiting your Reply"),
    7: ("Waiting on Third Party", "Being Processed"),
}
PRIORITIES: dict[str, int] = {"Low": 1, "Medium": 2, "High": 3, "Urgent": 4}
SOURCES: dict[str, int] = {
    "Email": 1,
    "Portal": 2,
    "Phone": 3,
    "Chat": 7,
    "Feedback Widget": 9,
    "Outbound Email": 10,
}
CUSTOM_TEXT_MAX = 255

_FIRST = ("Alex", "Maria", "Jonas", "Priya", "Tom", "Sofia", "Lukas", "Mei", "Noah", "Clara", "Omar", "Eva")
_LAST = ("Schmidt", "Miller", "Weber", "Garcia", "Fischer", "Nguyen", "Wagner", "Rossi", "Becker", "Kim")
_COMPANIES = (
    "Acme GmbH",
    "Globex Ltd",
    "Initech AG",
    "Umbrella Retail",
    "Stark Logistics",
    "Wayne Foods",
    "Hooli Europe",
)


@dataclass
class Agent:
    id: int
    name: str
    email: str
    group_ids: list[int]
    ticket_scope: int = 1
    role: str = "agent"


@dataclass
class Contact:
    id: int
    name: str
    email: str
    company_id: int | None


@dataclass
class CustomField:
    """A custom ticket field (``cf_`` name) with its type and, for dropdowns, its choices."""

    name: str
    label: str
    type: str  # custom_dropdown | custom_text
    choices: list[str] = field(default_factory=list)
    required_for_agents: bool = False
    required_for_closure: bool = False


@dataclass
class Account:
    """Everything about the account except its tickets. Ids are large integers, as in Freshdesk."""

    groups: dict[int, str]
    agents: dict[int, Agent]
    contacts: dict[int, Contact]
    companies: dict[int, str]
    ticket_types: list[str]
    custom_fields: dict[str, CustomField]
    me: int  # the agent the API key belongs to
    created_at: int
    required_for_agents: frozenset[str] = frozenset()
    required_for_closure: frozenset[str] = frozenset()
    _group_by_name: dict[str, int] = field(init=False, repr=False)
    _contact_by_email: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._group_by_name = {name.lower(): gid for gid, name in self.groups.items()}
        self._contact_by_email = {c.email.lower(): cid for cid, c in self.contacts.items()}

    def group_id(self, name: str) -> int:
        return self._group_by_name[name.lower()]

    def contact_by_email(self, email: str) -> int | None:
        return self._contact_by_email.get(email.lower())

    def canonical_type(self, value: str) -> str | None:
        """The account's spelling of a ticket type (case-insensitive), or ``None`` if unknown."""
        lowered = value.lower()
        return next((t for t in self.ticket_types if t.lower() == lowered), None)

    def ticket_fields(self) -> list[dict[str, Any]]:
        """``GET /ticket_fields``: every field, with Freshdesk's choice shapes (§11.1)."""
        stamp = format_ts(self.created_at)
        fields: list[dict[str, Any]] = []

        def add(name: str, label: str, ftype: str, default: bool, choices: Any = None, **flags: bool) -> None:
            item: dict[str, Any] = {
                "id": 67000439400 + len(fields),
                "name": name,
                "label": label,
                "description": f"Ticket {label.lower()}",
                "position": len(fields) + 1,
                "required_for_closure": flags.get("closure", False),
                "required_for_agents": flags.get("agents", False),
                "type": ftype,
                "default": default,
                "customers_can_edit": ftype in ("default_subject", "default_description"),
                "customers_can_filter": False,
                "label_for_customers": label,
                "required_for_customers": False,
                "displayed_to_customers": ftype
                in ("default_subject", "default_description", "default_status"),
                "created_at": stamp,
                "updated_at": stamp,
            }
            if choices is not None:
                item["choices"] = choices
            fields.append(item)

        add("requester", "Search a requester", "default_requester", True, agents=True)
        add("subject", "Subject", "default_subject", True, agents=True)
        add(
            "ticket_type",
            "Type",
            "default_ticket_type",
            True,
            list(self.ticket_types),
            agents="type" in self.required_for_agents,
            closure="type" in self.required_for_closure,
        )
        add("source", "Source", "default_source", True, dict(SOURCES))
        add(
            "status",
            "Status",
            "default_status",
            True,
            {str(k): list(v) for k, v in STATUSES.items()},
            agents=True,
        )
        add("priority", "Priority", "default_priority", True, dict(PRIORITIES), agents=True)
        add(
            "group",
            "Group",
            "default_group",
            True,
            {html.escape(name, quote=False): gid for gid, name in self.groups.items()},
            agents="group" in self.required_for_agents,
            closure="group" in self.required_for_closure,
        )
        add("agent", "Agent", "default_agent", True, {a.name: a.id for a in self.agents.values()})
        add("product", "Product", "default_product", True, {})
        add("company", "Company", "default_company", True)
        add("description", "Description", "default_description", True, agents=True)
        for cf in self.custom_fields.values():
            add(
                cf.name,
                cf.label,
                cf.type,
                False,
                list(cf.choices) if cf.type == "custom_dropdown" else None,
                agents=cf.required_for_agents,
                closure=cf.required_for_closure,
            )
        return fields

    def group_json(self, gid: int) -> dict[str, Any]:
        stamp = format_ts(self.created_at)
        return {
            "id": gid,
            "name": self.groups[gid],
            "description": f"Members of the {self.groups[gid]} team belong to this group",
            "escalate_to": None,
            "unassigned_for": None,
            "business_hour_id": None,
            "group_type": "support_agent_group",
            "created_at": stamp,
            "updated_at": stamp,
        }

    def agent_json(self, agent: Agent) -> dict[str, Any]:
        stamp = format_ts(self.created_at)
        return {
            "available": True,
            "occasional": False,
            "id": agent.id,
            "ticket_scope": agent.ticket_scope,
            "signature": None,
            "group_ids": list(agent.group_ids),
            "role_ids": [67000100001 if agent.role == "admin" else 67000100002],
            "skill_ids": [],
            "available_since": None,
            "type": "support_agent",
            "created_at": stamp,
            "updated_at": stamp,
            "last_active_at": stamp,
            "contact": {
                "active": True,
                "email": agent.email,
                "job_title": None,
                "language": "en",
                "last_login_at": stamp,
                "mobile": None,
                "name": agent.name,
                "phone": None,
                "time_zone": "UTC",
                "created_at": stamp,
                "updated_at": stamp,
            },
        }


def build_account(
    groups: list[str],
    ticket_types: list[str],
    products: list[str],
    *,
    contacts: int,
    created_at: int,
    seed: int,
    required_for_agents: tuple[str, ...] = (),
    required_for_closure: tuple[str, ...] = (),
) -> Account:
    """An account with the given label sets and deterministic ids, agents and contacts."""
    rng = random.Random(seed)
    group_ids = {67000259990 + 7 * i: name for i, name in enumerate(groups)}
    agents: dict[int, Agent] = {}
    admin = Agent(67013469900, "Triage Bot", "triage-bot@simulator.local", list(group_ids), role="admin")
    agents[admin.id] = admin
    for i, gid in enumerate(group_ids):
        for j in range(2):
            aid = 67013469911 + 13 * (2 * i + j)
            name = f"{_FIRST[(2 * i + j) % len(_FIRST)]} {_LAST[(i + 3 * j) % len(_LAST)]}"
            agents[aid] = Agent(aid, name, f"agent{2 * i + j}@simulator.local", [gid])
    company_ids = {67000300000 + 11 * i: name for i, name in enumerate(_COMPANIES)}
    people: dict[int, Contact] = {}
    for i in range(max(1, contacts)):
        cid = 67032849000 + 17 * i
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        company = rng.choice(list(company_ids)) if rng.random() < 0.7 else None
        people[cid] = Contact(cid, name, f"customer{i}@example.com", company)
    custom = {
        "cf_product": CustomField("cf_product", "Product area", "custom_dropdown", list(products)),
        "cf_order_number": CustomField("cf_order_number", "Order number", "custom_text"),
    }
    for name in required_for_agents:
        if name in custom:
            custom[name].required_for_agents = True
    for name in required_for_closure:
        if name in custom:
            custom[name].required_for_closure = True
    return Account(
        groups=group_ids,
        agents=agents,
        contacts=people,
        companies=company_ids,
        ticket_types=list(ticket_types),
        custom_fields=custom,
        me=admin.id,
        created_at=created_at,
        required_for_agents=frozenset(required_for_agents),
        required_for_closure=frozenset(required_for_closure),
    )
