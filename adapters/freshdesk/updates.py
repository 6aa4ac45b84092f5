"""Turn triage's ``{field: label or native value}`` into the properties Freshdesk accepts.

Everything is checked here, before any request: a label Freshdesk does not know raises
:class:`UnknownLabelError`; a malformed value (a tag with a comma, a string priority) raises
:class:`TicketSystemValidationError` with ``status_code=None``. Integers stay integers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from triage.adapters.base import FieldSpec
from triage.adapters.errors import FieldError, TicketSystemValidationError, UnknownLabelError
from triage.adapters.freshdesk.parsing import FieldMetadata

#: Triage field name -> Freshdesk property.
NATIVE_KEYS = {"group": "group_id", "priority": "priority", "type": "type", "status": "status"}
_BY_NATIVE = {native: name for name, native in NATIVE_KEYS.items()}
#: Properties a ticket update accepts (reference §9.1) besides the ones mapped above.
_PASSTHROUGH = frozenset(
    {
        "name", "requester_id", "email", "phone", "twitter_id", "facebook_id", "unique_external_id",
        "subject", "description", "source", "responder_id", "product_id", "company_id",
        "email_config_id", "due_by", "fr_due_by", "parent_id", "internal_agent_id",
        "internal_group_id", "skill_id", "lookup_parameter", "skip_close_notification",
    }
)  # fmt: skip
_NULLABLE = frozenset({"group", "type", "dropdown"})
MAX_TAG_LENGTH = 32


def build_properties(data: Mapping[str, Any], metadata: FieldMetadata) -> tuple[dict[str, Any], list[str]]:
    """Freshdesk properties for ``data`` (without tags) and the validated tags to add."""
    properties: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    tags: list[str] = []
    for key, value in data.items():
        if key == "tags":
            tags = validate_tags(value)
        elif key in NATIVE_KEYS or key in _BY_NATIVE:
            name = _BY_NATIVE.get(key, key)
            properties[NATIVE_KEYS[name]] = native_value(name, value, metadata)
        elif key == "custom_fields":
            if not isinstance(value, Mapping):
                raise _invalid("custom_fields", "It should be a/an key/value pair", "datatype_mismatch")
            for name, item in value.items():
                custom[name] = native_value(name, item, metadata)
        elif key.startswith("cf_"):
            custom[key] = native_value(key, value, metadata)
        elif key in _PASSTHROUGH:
            properties[key] = value
        else:
            raise _invalid(key, "Unexpected/invalid field in request", "invalid_field")
    if custom:
        properties["custom_fields"] = custom
    return properties, tags


def native_value(name: str, value: Any, metadata: FieldMetadata) -> Any:
    """The value Freshdesk expects for triage field ``name`` given a label or a native value."""
    if name.startswith("cf_"):
        kind = metadata.custom_types.get(name)
        if kind is None:
            raise UnknownLabelError(f"{name}: this helpdesk has no such custom field")
        if kind != "custom_dropdown":
            return value
    spec = metadata.specs.get(name)
    if spec is None:
        raise UnknownLabelError(f"{name}: the helpdesk reported no metadata for this field")
    return _native_for_spec(spec, value)


def _native_for_spec(spec: FieldSpec, value: Any) -> Any:
    if value is None:
        if spec.kind in _NULLABLE:
            return None
        raise _invalid(spec.name, "cannot be cleared", "invalid_value")
    if isinstance(value, bool):
        raise _invalid(spec.name, "Value set is of type Boolean", "datatype_mismatch")
    if isinstance(value, int):
        if spec.kind not in ("group", "priority", "status"):
            raise _invalid(spec.name, "It should be a/an String", "datatype_mismatch")
        if value not in set(spec.choices.values()):
            raise UnknownLabelError(f"{spec.name}: {value} is not one of the ticket system's values")
        return value
    if isinstance(value, str):
        return spec.to_native(value)
    raise _invalid(spec.name, f"Value set is of type {type(value).__name__}", "datatype_mismatch")


def validate_tags(value: Any) -> list[str]:
    """Tags as Freshdesk takes them: strings of at most 32 characters without commas."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise _invalid("tags", "It should be a/an Array", "datatype_mismatch")
    tags: list[str] = []
    for tag in value:
        if not isinstance(tag, str) or not tag.strip():
            raise _invalid("tags", "It should contain elements of type String only", "datatype_mismatch")
        tag = tag.strip()
        if len(tag) > MAX_TAG_LENGTH or "," in tag:
            raise _invalid(
                "tags",
                f"{tag!r}: tags have at most {MAX_TAG_LENGTH} characters and no commas",
                "invalid_value",
            )
        tags.append(tag)
    return tags


def merge_tags(current: Iterable[str], added: Iterable[str]) -> list[str]:
    """``current`` followed by each added tag it lacks (compared case-insensitively)."""
    merged = list(current)
    seen = {tag.lower() for tag in merged}
    for tag in added:
        if tag.lower() not in seen:
            merged.append(tag)
            seen.add(tag.lower())
    return merged


def _invalid(field: str, message: str, code: str) -> TicketSystemValidationError:
    """A validation error found before sending (``status_code`` stays ``None``: nothing was sent)."""
    return TicketSystemValidationError(
        "rejected before sending", errors=[FieldError(field=field, message=message, code=code)]
    )
