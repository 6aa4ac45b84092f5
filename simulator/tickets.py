"""The stored ticket and its JSON renderings (list item, full view) in Freshdesk's exact shape."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from triage.simulator.timeutil import format_ts


@dataclass(slots=True)
class StoredTicket:
    """One ticket as the simulator keeps it. Times are epoch seconds (UTC)."""

    id: int
    subject: str
    description_text: str
    status: int
    priority: int
    group_id: int | None
    type: str | None
    responder_id: int | None
    requester_id: int
    company_id: int | None
    source: int
    created_at: int
    updated_at: int
    due_by: int
    fr_due_by: int
    custom_fields: dict[str, Any]
    tags: list[str] = field(default_factory=list)
    spam: bool = False
    deleted: bool = False
    language: str = "en"
    status_updated_at: int | None = None
    agent_responded_at: int | None = None
    resolved_at: int | None = None
    closed_at: int | None = None

    @property
    def description_html(self) -> str:
        paragraphs = self.description_text.split("\n")
        return "".join(f"<div>{html.escape(p) if p else '<br>'}</div>" for p in paragraphs)


def list_item(ticket: StoredTicket) -> dict[str, Any]:
    """The fields every ``GET /tickets`` item carries (reference §5.2), in Freshdesk's order."""
    item: dict[str, Any] = {
        "cc_emails": [],
        "fwd_emails": [],
        "reply_cc_emails": [],
        "ticket_cc_emails": [],
        "fr_escalated": False,
        "spam": ticket.spam,
        "email_config_id": None,
        "group_id": ticket.group_id,
        "priority": ticket.priority,
        "requester_id": ticket.requester_id,
        "responder_id": ticket.responder_id,
        "source": ticket.source,
        "company_id": ticket.company_id,
        "status": ticket.status,
        "subject": ticket.subject,
        "association_type": None,
        "support_email": None,
        "to_emails": None,
        "product_id": None,
        "id": ticket.id,
        "type": ticket.type,
        "due_by": format_ts(ticket.due_by),
        "fr_due_by": format_ts(ticket.fr_due_by),
        "is_escalated": False,
        "custom_fields": dict(ticket.custom_fields),
        "created_at": format_ts(ticket.created_at),
        "updated_at": format_ts(ticket.updated_at),
        "associated_tickets_count": None,
        "tags": list(ticket.tags),
        "nr_due_by": None,
        "nr_escalated": False,
    }
    if ticket.deleted:
        item["deleted"] = True
    return item


def with_description(item: dict[str, Any], ticket: StoredTicket) -> dict[str, Any]:
    item["description"] = ticket.description_html
    item["description_text"] = ticket.description_text
    return item


def full_view(ticket: StoredTicket) -> dict[str, Any]:
    """``GET /tickets/{id}`` and the ``PUT`` answer: the list fields plus description and attachments."""
    item = with_description(list_item(ticket), ticket)
    item["attachments"] = []
    item["source_additional_info"] = None
    return item


def stats_json(ticket: StoredTicket) -> dict[str, Any]:
    return {
        "agent_responded_at": format_ts(ticket.agent_responded_at),
        "requester_responded_at": None,
        "first_responded_at": format_ts(ticket.agent_responded_at),
        "status_updated_at": format_ts(ticket.status_updated_at),
        "reopened_at": None,
        "resolved_at": format_ts(ticket.resolved_at),
        "closed_at": format_ts(ticket.closed_at),
        "pending_since": format_ts(ticket.status_updated_at) if ticket.status == 3 else None,
    }
