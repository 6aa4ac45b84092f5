"""Freshdesk's validation of ticket updates (reference §9.1-9.3): every error of a body at once."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from triage.simulator.account import CUSTOM_TEXT_MAX, SOURCES, STATUSES, Account, CustomField
from triage.simulator.responses import field_error, invalid_field, one_of, should_be
from triage.simulator.tickets import StoredTicket
from triage.simulator.timeutil import parse_input_datetime

MAX_TAG_LENGTH = 32
MAX_SUBJECT_LENGTH = 255
PRIORITY_VALUES = (1, 2, 3, 4)

#: Keys Freshdesk accepts in an update but the simulator does not model: type-checked, then ignored.
ACCEPTED_UNMODELLED: dict[str, str] = {
    "name": "String",
    "email": "String",
    "phone": "String",
    "twitter_id": "String",
    "facebook_id": "String",
    "unique_external_id": "String",
    "lookup_parameter": "String",
    "parent_id": "Positive Integer",
    "internal_agent_id": "Positive Integer",
    "internal_group_id": "Positive Integer",
    "skill_id": "Positive Integer",
    "skip_close_notification": "Boolean",
}
_ID_FIELDS = {
    "group_id": "group",
    "responder_id": "agent",
    "requester_id": "contact",
    "company_id": "company",
    "product_id": "product",
    "email_config_id": "email_config",
}
MODELLED = (
    "subject",
    "description",
    "status",
    "priority",
    "source",
    "type",
    "tags",
    "custom_fields",
    "due_by",
    "fr_due_by",
    *_ID_FIELDS,
)
UPDATE_FIELDS = frozenset(MODELLED) | frozenset(ACCEPTED_UNMODELLED)

Errors = list[dict[str, str]]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_update(
    body: dict[str, Any],
    account: Account,
    ticket: StoredTicket | None,
    *,
    enforce_mandatory: bool = True,
) -> tuple[Errors, dict[str, Any]]:
    """Check an update body; returns ``(errors, values)`` where ``values`` uses stored field names.

    With ``ticket=None`` (a bulk update's properties) only what holds for every ticket is checked;
    call again per ticket for existence-on-change and mandatory fields.
    """
    errors: Errors = []
    values: dict[str, Any] = {}
    for key, value in body.items():
        if key not in UPDATE_FIELDS:
            errors.append(invalid_field(key))
        elif key in ACCEPTED_UNMODELLED:
            _check_unmodelled(key, value, errors)
        elif key in ("status", "priority", "source"):
            _check_enum(key, value, errors, values)
        elif key in _ID_FIELDS:
            _check_id(key, value, account, ticket, errors, values)
        elif key == "type":
            _check_type(value, account, errors, values)
        elif key in ("subject", "description"):
            _check_text(key, value, errors, values)
        elif key == "tags":
            _check_tags(value, errors, values)
        elif key == "custom_fields":
            _check_custom_fields(value, account, errors, values)
        elif key in ("due_by", "fr_due_by"):
            if not isinstance(value, str) or parse_input_datetime(value) is None:
                errors.append(
                    field_error(
                        key, "It should be a valid date in the 'combined date and time ISO8601' format"
                    )
                )
            else:
                values[key] = parse_input_datetime(value)
    if ticket is not None:
        errors.extend(_mandatory_errors(account, ticket, values, enforce_mandatory))
    return errors, values


def _check_unmodelled(key: str, value: Any, errors: Errors) -> None:
    expected = ACCEPTED_UNMODELLED[key]
    ok = {
        "String": isinstance(value, str),
        "Boolean": isinstance(value, bool),
        "Positive Integer": value is None or (_is_int(value) and value > 0),
    }[expected]
    if not ok:
        errors.append(field_error(key, should_be(expected, value), "datatype_mismatch"))


def _check_enum(key: str, value: Any, errors: Errors, values: dict[str, Any]) -> None:
    allowed = {"status": tuple(STATUSES), "priority": PRIORITY_VALUES, "source": tuple(SOURCES.values())}[key]
    if not _is_int(value):
        errors.append(field_error(key, one_of(allowed, value), "datatype_mismatch"))
    elif value not in allowed:
        errors.append(field_error(key, one_of(allowed)))
    else:
        values[key] = value


def _check_id(
    key: str,
    value: Any,
    account: Account,
    ticket: StoredTicket | None,
    errors: Errors,
    values: dict[str, Any],
) -> None:
    if value is None:
        if key == "requester_id":
            errors.append(field_error(key, should_be("Positive Integer", value), "datatype_mismatch"))
        elif key in ("group_id", "responder_id", "company_id"):
            values[key] = None
        return
    if not _is_int(value):
        errors.append(field_error(key, should_be("Positive Integer", value), "datatype_mismatch"))
        return
    if value <= 0:
        errors.append(field_error(key, should_be("Positive Integer")))
        return
    if ticket is not None and getattr(ticket, key, None) == value:
        values[key] = value  # existence is only checked when the value changes
        return
    known: Collection[int] = {
        "group_id": account.groups.keys(),
        "responder_id": account.agents.keys(),
        "requester_id": account.contacts.keys(),
        "company_id": account.companies.keys(),
    }.get(key, ())
    if value in known:
        values[key] = value
    else:  # the simulated account has no products or email configs: every such id is unknown
        errors.append(field_error(key, f"There is no {_ID_FIELDS[key]} matching the given {key}"))


def _check_type(value: Any, account: Account, errors: Errors, values: dict[str, Any]) -> None:
    if value is None:
        values["type"] = None
    elif not isinstance(value, str):
        errors.append(field_error("type", one_of(account.ticket_types, value), "datatype_mismatch"))
    elif (canonical := account.canonical_type(value)) is None:
        errors.append(field_error("type", one_of(account.ticket_types)))
    else:
        values["type"] = canonical


def _check_text(key: str, value: Any, errors: Errors, values: dict[str, Any]) -> None:
    if not isinstance(value, str):
        errors.append(field_error(key, should_be("String", value), "datatype_mismatch"))
    elif key == "subject" and len(value) > MAX_SUBJECT_LENGTH:
        errors.append(
            field_error(
                key, f"Has {len(value)} characters, it can have maximum of {MAX_SUBJECT_LENGTH} characters"
            )
        )
    elif key == "subject":
        values["subject"] = value
    else:
        values["description_text"] = value


def _check_tags(value: Any, errors: Errors, values: dict[str, Any]) -> None:
    if not isinstance(value, list):
        errors.append(field_error("tags", should_be("Array", value), "datatype_mismatch"))
    elif not all(isinstance(tag, str) for tag in value):
        errors.append(
            field_error("tags", "It should contain elements of type String only", "datatype_mismatch")
        )
    elif any(len(tag) > MAX_TAG_LENGTH for tag in value):
        errors.append(
            field_error(
                "tags", f"It should only contain elements that have maximum of {MAX_TAG_LENGTH} characters"
            )
        )
    elif any("," in tag for tag in value):
        errors.append(
            field_error("tags", "It should not have strings containing the special characters: ','")
        )
    else:
        values["tags"] = [tag.strip() for tag in value]


def _check_custom_fields(value: Any, account: Account, errors: Errors, values: dict[str, Any]) -> None:
    if not isinstance(value, dict):
        errors.append(field_error("custom_fields", should_be("key/value pair", value), "datatype_mismatch"))
        return
    accepted: dict[str, Any] = {}
    for key, item in value.items():
        spec = account.custom_fields.get(key)
        if spec is None:
            errors.append(invalid_field(key))  # unknown custom keys are named bare
            continue
        name = f"custom_fields.{key}"
        if item is None:
            accepted[key] = None
        elif spec.type == "custom_dropdown":
            if not isinstance(item, str):
                errors.append(field_error(name, one_of(spec.choices, item), "datatype_mismatch"))
            elif (choice := _choice(spec, item)) is None:
                errors.append(field_error(name, one_of(spec.choices)))
            else:
                accepted[key] = choice
        elif not isinstance(item, str):
            errors.append(field_error(name, should_be("String", item), "datatype_mismatch"))
        elif len(item) > CUSTOM_TEXT_MAX:
            errors.append(
                field_error(
                    name, f"Has {len(item)} characters, it can have maximum of {CUSTOM_TEXT_MAX} characters"
                )
            )
        else:
            accepted[key] = item
    if accepted:
        values["custom_fields"] = accepted


def _choice(spec: CustomField, value: str) -> str | None:
    lowered = value.lower()
    return next((c for c in spec.choices if c.lower() == lowered), None)


def _mandatory_errors(
    account: Account, ticket: StoredTicket, values: dict[str, Any], enforce_mandatory: bool
) -> Errors:
    """``missing_field`` for required-for-agents fields left empty (unless not enforced) and for
    required-for-closure fields when the update resolves or closes the ticket."""
    required = set(account.required_for_agents) if enforce_mandatory else set()
    if values.get("status") in (4, 5):
        required |= account.required_for_closure
    errors: Errors = []
    for name in sorted(required):
        if name == "group":
            current = values.get("group_id", ticket.group_id)
            if current is None:
                errors.append(field_error("group_id", should_be("Positive Integer"), "missing_field"))
        elif name == "type":
            current = values.get("type", ticket.type)
            if current is None:
                errors.append(field_error("type", one_of(account.ticket_types), "missing_field"))
        else:
            merged = {**ticket.custom_fields, **values.get("custom_fields", {})}
            if merged.get(name) in (None, ""):
                spec = account.custom_fields[name]
                message = one_of(spec.choices) if spec.type == "custom_dropdown" else should_be("String")
                errors.append(field_error(f"custom_fields.{name}", message, "missing_field"))
    return errors
