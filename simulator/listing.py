"""``GET /tickets``: parameter validation, Freshdesk's implicit conditions, ordering and pages (§6)."""

from __future__ import annotations

from dataclasses import dataclass

from triage.simulator.responses import (
    INVALID_DATE,
    ISO_DATETIME,
    PAGE_BEYOND,
    POSITIVE_INT_MAX,
    field_error,
    invalid_field,
    one_of,
    should_be,
)
from triage.simulator.store import TicketStore
from triage.simulator.timeutil import one_month_before, parse_input_datetime, start_of_day

LIST_PARAMS = (
    "filter",
    "requester_id",
    "email",
    "company_id",
    "updated_since",
    "order_by",
    "order_type",
    "include",
    "page",
    "per_page",
)
FILTERS = ("new_and_my_open", "watching", "spam", "deleted")
ORDER_BY = ("due_by", "created_at", "updated_at", "priority", "status")
ORDER_TYPES = ("asc", "desc")
LIST_INCLUDES = ("requester", "stats", "company", "description")
MAX_PAGE = 300
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 30


@dataclass(frozen=True)
class ListQuery:
    """A validated list request."""

    filter: str | None = None
    requester_id: int | None = None
    company_id: int | None = None
    updated_since: int | None = None
    order_by: str = "created_at"
    order_type: str = "desc"
    includes: tuple[str, ...] = ()
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE

    @property
    def default_window(self) -> bool:
        """Whether the created-in-the-last-month condition applies (none of the narrowing params)."""
        return (
            self.filter is None
            and self.requester_id is None
            and self.company_id is None
            and self.updated_since is None
        )


def parse_positive(raw: str) -> int | None:
    return int(raw) if raw.isdigit() and int(raw) > 0 else None


def includes_of(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def parse_list_query(params: dict[str, str], store: TicketStore) -> tuple[list[dict[str, str]], ListQuery]:
    """Validate list parameters; returns ``(errors, query)`` (the query is meaningful without errors)."""
    errors: list[dict[str, str]] = []
    values: dict[str, object] = {}
    account = store.account
    for key in params:
        if key not in LIST_PARAMS:
            errors.append(invalid_field(key))
    if "filter" in params:
        if params["filter"] in FILTERS:
            values["filter"] = params["filter"]
        else:
            errors.append(field_error("filter", one_of(FILTERS)))
    for key, table, resource in (
        ("requester_id", account.contacts, "contact"),
        ("company_id", account.companies, "company"),
    ):
        if key in params:
            number = parse_positive(params[key])
            if number is None:
                errors.append(field_error(key, should_be("Positive Integer"), "datatype_mismatch"))
            elif number not in table:
                errors.append(field_error(key, f"There is no {resource} matching the given {key}"))
            else:
                values[key] = number
    if "email" in params:
        contact = account.contact_by_email(params["email"])
        if contact is None:
            errors.append(field_error("email", "There is no contact matching the given email"))
        else:
            values["requester_id"] = contact
    if "updated_since" in params:
        moment = parse_input_datetime(params["updated_since"])
        if moment is None:
            errors.append(field_error("updated_since", INVALID_DATE.format(accepted=ISO_DATETIME)))
        else:
            values["updated_since"] = moment
    if "order_by" in params:
        if params["order_by"] in ORDER_BY:
            values["order_by"] = params["order_by"]
        else:
            errors.append(field_error("order_by", one_of(ORDER_BY)))
    if "order_type" in params:
        if params["order_type"] in ORDER_TYPES:
            values["order_type"] = params["order_type"]
        else:
            errors.append(field_error("order_type", one_of(ORDER_TYPES)))
    if "include" in params:
        wanted = includes_of(params["include"])
        if not wanted or any(part not in LIST_INCLUDES for part in wanted):
            errors.append(field_error("include", one_of(LIST_INCLUDES, sep=", ")))
        else:
            values["includes"] = tuple(dict.fromkeys(wanted))
    if "per_page" in params:
        raw = params["per_page"]
        number = int(raw) if raw.lstrip("-").isdigit() else None
        if number is None:
            errors.append(
                field_error("per_page", POSITIVE_INT_MAX.format(max=MAX_PER_PAGE), "datatype_mismatch")
            )
        elif not 1 <= number <= MAX_PER_PAGE:
            errors.append(field_error("per_page", POSITIVE_INT_MAX.format(max=MAX_PER_PAGE)))
        else:
            values["per_page"] = number
    if "page" in params:
        raw = params["page"]
        number = int(raw) if raw.lstrip("-").isdigit() else None
        if number is None:
            errors.append(field_error("page", PAGE_BEYOND.format(max=MAX_PAGE), "datatype_mismatch"))
        elif not 1 <= number <= MAX_PAGE:
            errors.append(field_error("page", PAGE_BEYOND.format(max=MAX_PAGE)))
        else:
            values["page"] = number
    return errors, ListQuery(**values)  # type: ignore[arg-type]


def select(query: ListQuery, store: TicketStore) -> list[int]:
    """The ids the query matches, in its order (cached per store version, so pages are cheap)."""
    key = (
        query.filter,
        query.requester_id,
        query.company_id,
        query.updated_since,
        query.order_by,
        query.order_type,
        _window_start(store) if query.default_window else None,
    )
    return store.cached(("list", *key), lambda: _compute(query, store))


def _window_start(store: TicketStore) -> int:
    """Tickets created after the start of today (UTC) minus one calendar month."""
    return one_month_before(start_of_day(store.clock.now()))


def _compute(query: ListQuery, store: TicketStore) -> list[int]:
    tickets = store.tickets
    by_updated = query.order_by == "updated_at"
    candidates = (
        store.updated_since(query.updated_since)
        if query.updated_since is not None
        else store.all_by_updated()
    )
    window = _window_start(store) if query.default_window else None
    me = store.account.me
    selected = []
    for tid in candidates:
        t = tickets[tid]
        if query.filter == "deleted":
            if not t.deleted:
                continue
        elif query.filter == "spam":
            if not t.spam or t.deleted:
                continue
        elif t.spam or t.deleted:
            continue
        elif query.filter == "watching":
            continue  # the API agent watches no tickets
        elif query.filter == "new_and_my_open" and not (t.status == 2 and t.responder_id in (None, me)):
            continue
        if query.requester_id is not None and t.requester_id != query.requester_id:
            continue
        if query.company_id is not None and t.company_id != query.company_id:
            continue
        if window is not None and t.created_at <= window:
            continue
        selected.append(tid)
    descending = query.order_type == "desc"
    if by_updated:
        return selected[::-1] if descending else selected
    field = query.order_by
    selected.sort(key=lambda tid: (getattr(tickets[tid], field), tid), reverse=descending)
    return selected


def page_slice(ids: list[int], query: ListQuery) -> tuple[list[int], bool]:
    """The page's ids and whether more exist (Freshdesk fetches ``per_page + 1`` rows to know)."""
    start = (query.page - 1) * query.per_page
    rows = ids[start : start + query.per_page + 1]
    return rows[: query.per_page], len(rows) > query.per_page


def link_header(base_url: str, path: str, raw_params: list[tuple[str, str]], next_page: int) -> str:
    """``<base/path?...&page=N>; rel="next"``: every original parameter echoed unencoded, page replaced."""
    pairs = [(k, v) for k, v in raw_params if k != "page"]
    position = next((i for i, (k, _) in enumerate(raw_params) if k == "page"), len(pairs))
    pairs.insert(position, ("page", str(next_page)))
    query = "&".join(f"{k}={v}" for k, v in pairs)
    return f'<{base_url}{path}?{query}>; rel="next"'
