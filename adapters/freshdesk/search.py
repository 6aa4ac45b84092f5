"""Build Freshdesk search queries (``GET /search/tickets?query="…"``) from OTAI-style mappings.

``{"group": "Billing", "status": [2, 3]}`` becomes ``group_id:67 AND (status:2 OR status:3)``:
keys are ANDed, list values ORed, strings single-quoted, labels of triage fields (group,
priority, status, type, dropdowns) mapped to Freshdesk's values. ``{"query": "<freshquery>"}``
passes a raw query through. Search returns at most 300 tickets (10 pages of 30); see
:class:`SearchTooBroadError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from triage.adapters.errors import FieldError, TicketSystemValidationError
from triage.adapters.freshdesk.parsing import FieldMetadata
from triage.adapters.freshdesk.updates import NATIVE_KEYS, native_value

MAX_QUERY_LENGTH = 512
PAGE_SIZE = 30
MAX_PAGES = 10
MAX_RESULTS = PAGE_SIZE * MAX_PAGES

#: Triage or ticket attribute names -> Freshdesk search field names.
_SEARCH_FIELDS = {"group": "group_id", "tags": "tag", "responder_id": "agent_id"}


class SearchTooBroadError(TicketSystemValidationError):
    """The query matches more tickets than search can return (300); nothing is silently cut off.

    Narrow the query, or pass ``max_results`` to take the first ones deliberately.
    """

    def __init__(self, total: int, **kwargs: Any) -> None:
        self.total = total
        super().__init__(
            f"the search matches {total} tickets but Freshdesk returns at most {MAX_RESULTS}; "
            "narrow the query or pass max_results",
            errors=[FieldError("query", f"{total} matches exceed {MAX_RESULTS}", "too_many_results")],
            **kwargs,
        )


def build_query(query: Mapping[str, Any], metadata: FieldMetadata | None) -> str:
    """The Freshdesk query text (without the surrounding double quotes), length-checked."""
    if not query:
        raise _invalid("an empty query would match nothing useful; give at least one field")
    if "query" in query:
        if len(query) > 1:
            raise _invalid("pass either {'query': <raw query>} or field -> value pairs, not both")
        text = str(query["query"]).strip().strip('"')
    else:
        text = " AND ".join(_clause(key, value, metadata) for key, value in query.items())
    if '"' in text:
        raise _invalid("double quotes cannot appear inside a Freshdesk query")
    if not text:
        raise _invalid("the query is empty")
    if len(text) > MAX_QUERY_LENGTH:
        raise _invalid(f"Has {len(text)} characters, it can have maximum of {MAX_QUERY_LENGTH} characters")
    return text


def needs_metadata(query: Mapping[str, Any]) -> bool:
    """Whether some value is a label that only field metadata can translate."""
    for key, value in query.items():
        values = value if isinstance(value, list | tuple | set | frozenset) else [value]
        if (key in NATIVE_KEYS or key.startswith("cf_")) and any(isinstance(v, str) for v in values):
            return True
    return False


def _clause(key: str, value: Any, metadata: FieldMetadata | None) -> str:
    values = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
    if not values:
        raise _invalid(f"{key}: an empty list matches nothing")
    terms = [_term(key, item, metadata) for item in values]
    return terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"


def _term(key: str, value: Any, metadata: FieldMetadata | None) -> str:
    if metadata is not None and isinstance(value, str) and (key in NATIVE_KEYS or key.startswith("cf_")):
        value = native_value(key, value, metadata)
    name = _SEARCH_FIELDS.get(key, key)
    if value is None:
        return f"{name}:null"
    if isinstance(value, bool):
        return f"{name}:{str(value).lower()}"
    if isinstance(value, int):
        return f"{name}:{value}"
    if isinstance(value, datetime | date):
        return f"{name}:'{value.strftime('%Y-%m-%d')}'"
    if isinstance(value, str):
        if "'" in value or '"' in value:
            raise _invalid(f"{key}: Freshdesk's query syntax cannot express quotes inside a value")
        return f"{name}:'{value}'"
    raise _invalid(f"{key}: cannot search for a {type(value).__name__}")


def _invalid(message: str) -> TicketSystemValidationError:
    return TicketSystemValidationError(
        "invalid search query", errors=[FieldError("query", message, "invalid_value")]
    )
