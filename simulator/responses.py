"""Freshdesk's response bodies and message templates (reference §2), verbatim."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

INVALID_FIELD = "Unexpected/invalid field in request"
MISSING_FIELD = "Mandatory attribute missing"
MISSING_PARAMS = "Your update call does not have any parameter. Atleast one parameter is required."
INVALID_JSON = "Request body has invalid json format"
INVALID_CREDENTIALS = "You have to be logged in to perform this action."
ACCESS_DENIED = "You are not authorized to perform this action."
SERVER_ERROR = "We're sorry, but something went wrong."
RATE_LIMITED = "You have exceeded the limit of requests per minute"
PAGE_BEYOND = "You cannot access tickets beyond the {max}th page. Please provide a smaller page number."
POSITIVE_INT_MAX = "It should be a Positive Integer less than or equal to {max}"
INVALID_DATE = "It should be a valid date in the '{accepted}' format"
ISO_DATETIME = "combined date and time ISO8601"
QUERY_FORMAT_INVALID = (
    "Given query is invalid, expected format \"keyword:value  OPERATOR keyword:'string' OPERATOR "
    "keyword:>'yyyy-mm-dd' OPERATOR keyword:<integer\". Space is mandatory between key/value pair and "
    "operator. Please check the paranthesis if there are any."
)

_STATUS_OF_CODE = {"duplicate_value": 409, "access_denied": 403}


@dataclass
class ApiResponse:
    """What the API answers. ``drop`` closes the connection instead; ``delay`` waits first."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    delay: float = 0.0


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> ApiResponse:
    return ApiResponse(status, dumps(obj), dict(headers or {}))


def empty(status: int) -> ApiResponse:
    """A response without a body (Freshdesk's 404 and 204)."""
    return ApiResponse(status)


def field_error(name: str, message: str, code: str = "invalid_value") -> dict[str, str]:
    return {"field": name, "message": message, "code": code}


def invalid_field(name: str) -> dict[str, str]:
    return field_error(name, INVALID_FIELD, "invalid_field")


def one_of(values: list[Any] | tuple[Any, ...], given: Any = None, sep: str = ",") -> str:
    """``It should be one of these values: '1,2,3,4'`` with the datatype prefix when a wrong type came."""
    message = f"It should be one of these values: '{sep.join(str(v) for v in values)}'"
    return message if given is None else f"Value set is of type {json_type(given)}.{message}"


def should_be(expected: str, given: Any = None) -> str:
    """``It should be a/an Positive Integer`` with the datatype prefix when a wrong type came."""
    message = f"It should be a/an {expected}"
    return message if given is None else f"Value set is of type {json_type(given)}.{message}"


def json_type(value: Any) -> str:
    """How Freshdesk names the JSON type of a value in ``Value set is of type X.``."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Number"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "Array"
    return "key/value pair"


def validation_failed(errors: list[dict[str, str]]) -> ApiResponse:
    """400 (or the most frequent mapped status) with every field error of the request."""
    statuses = Counter(_STATUS_OF_CODE.get(e["code"], 400) for e in errors)
    status = statuses.most_common(1)[0][0]
    return json_response(status, {"description": "Validation failed", "errors": errors})


def request_error(status: int, code: str, message: str) -> ApiResponse:
    return json_response(status, {"code": code, "message": message})


def method_not_allowed(method: str, allowed: list[str]) -> ApiResponse:
    joined = ", ".join(allowed)
    message = f"{method} method is not allowed. It should be one of these method(s): {joined}"
    return json_response(405, {"message": message}, {"Allow": joined})


def server_error(status: int = 500) -> ApiResponse:
    return json_response(status, {"message": SERVER_ERROR})
