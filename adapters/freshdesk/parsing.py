"""Freshdesk JSON -> triage objects: tickets (:class:`Ticket`) and field metadata (:class:`FieldSpec`)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from triage.adapters.base import FieldSpec, Ticket
from triage.adapters.errors import MalformedTicketError
from triage.errors import validation_problems

#: Freshdesk's fixed priorities (used when /ticket_fields does not list them).
PRIORITIES = {"Low": 1, "Medium": 2, "High": 3, "Urgent": 4}


def parse_ticket(raw: Any) -> Ticket:
    """A :class:`Ticket` from one Freshdesk ticket object; :class:`MalformedTicketError` if it can't be."""
    ticket_id = raw.get("id") if isinstance(raw, dict) else None
    ticket_id = ticket_id if isinstance(ticket_id, int) and not isinstance(ticket_id, bool) else None
    if not isinstance(raw, dict):
        raise MalformedTicketError(f"expected a ticket object, got {type(raw).__name__}", raw=raw)
    data = dict(raw)
    text = raw.get("description_text")
    data["description"] = text if isinstance(text, str) else html_to_text(raw.get("description"))
    for key, empty in (("subject", ""), ("tags", ()), ("custom_fields", {})):
        if data.get(key) is None:
            data[key] = empty
    data["spam"] = bool(raw.get("spam"))
    data["deleted"] = bool(raw.get("deleted"))
    try:
        return Ticket.model_validate(data)
    except PydanticValidationError as exc:
        problems = "; ".join(validation_problems(exc))
        raise MalformedTicketError(
            f"ticket {ticket_id if ticket_id is not None else '?'} cannot be read: {problems}",
            ticket_id=ticket_id,
            raw=raw,
        ) from None


def format_timestamp(moment: datetime) -> str:
    """Freshdesk's timestamp form, UTC to the second (``2024-05-01T00:00:00Z``); naive means UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _TextExtractor(HTMLParser):
    _BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(value: Any) -> str:
    """Plain text of a Freshdesk HTML body (only used when ``description_text`` is absent)."""
    if not isinstance(value, str) or not value:
        return ""
    extractor = _TextExtractor()
    extractor.feed(value)
    extractor.close()
    lines = (" ".join(line.split()) for line in "".join(extractor.parts).splitlines())
    return "\n".join(line for line in lines if line)


@dataclass(frozen=True)
class FieldMetadata:
    """What Freshdesk says about the writable fields: specs by triage name, custom field types."""

    specs: dict[str, FieldSpec]
    #: Every custom field's ``cf_`` name -> its Freshdesk type (``custom_text``, ``custom_dropdown``…).
    custom_types: dict[str, str]


def field_metadata(
    ticket_fields: Iterable[Mapping[str, Any]], groups: Mapping[str, int] | None
) -> FieldMetadata:
    """Build the field specs from ``/ticket_fields`` and, when readable, ``/groups`` (name -> id).

    Without ``groups`` (the key's agent may not read ``/groups``) group names come from the
    ``group`` field's choices, HTML-unescaped.
    """
    specs: dict[str, FieldSpec] = {}
    custom_types: dict[str, str] = {}
    for item in ticket_fields:
        kind, name = item.get("type"), item.get("name")
        if not isinstance(kind, str) or not isinstance(name, str):
            continue
        label = str(item.get("label") or name)
        required = bool(item.get("required_for_agents"))
        choices = item.get("choices")
        if kind == "default_priority":
            mapping = _int_choices(choices) or dict(PRIORITIES)
            specs["priority"] = FieldSpec(
                "priority", label, "priority", mapping, _label_of(mapping, 1), required
            )
        elif kind == "default_ticket_type":
            specs["type"] = FieldSpec("type", label, "type", _string_choices(choices), None, required)
        elif kind == "default_status":
            mapping = _status_choices(choices)
            specs["status"] = FieldSpec("status", label, "status", mapping, _label_of(mapping, 2), required)
        elif kind == "default_group":
            mapping = dict(groups) if groups is not None else _int_choices(choices)
            specs["group"] = FieldSpec("group", label, "group", mapping, None, required)
        elif name.startswith("cf_"):
            custom_types[name] = kind
            if kind == "custom_dropdown":
                specs[name] = FieldSpec(name, label, "dropdown", _string_choices(choices), None, required)
    if "priority" not in specs:
        specs["priority"] = FieldSpec("priority", "Priority", "priority", dict(PRIORITIES), "Low")
    if "group" not in specs and groups is not None:
        specs["group"] = FieldSpec("group", "Group", "group", dict(groups))
    return FieldMetadata(specs, custom_types)


def _label_of(mapping: Mapping[str, Any], native: Any) -> str | None:
    return next((label for label, value in mapping.items() if value == native), None)


def _int_choices(choices: Any) -> dict[str, int]:
    """``{"R&amp;D": 7}`` -> ``{"R&D": 7}``, dropping anything that is not ``name -> integer``."""
    if not isinstance(choices, Mapping):
        return {}
    return {
        html.unescape(str(label)): value
        for label, value in choices.items()
        if isinstance(value, int) and not isinstance(value, bool)
    }


def _string_choices(choices: Any) -> dict[str, str]:
    """A list of choice strings (or a mapping's keys) as ``label -> label``."""
    if isinstance(choices, Mapping):
        choices = list(choices)
    if not isinstance(choices, list):
        return {}
    return {c: c for c in choices if isinstance(c, str)}


def _status_choices(choices: Any) -> dict[str, int]:
    """``{"2": ["Open", "Being Processed"]}`` -> ``{"Open": 2}`` (the agent-facing label)."""
    if not isinstance(choices, Mapping):
        return {}
    mapping: dict[str, int] = {}
    for status_id, labels in choices.items():
        agent_label = labels[0] if isinstance(labels, list) and labels else labels
        try:
            mapping[html.unescape(str(agent_label))] = int(status_id)
        except (TypeError, ValueError):
            continue
    return mapping
