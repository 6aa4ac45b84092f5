"""The Freshdesk REST API v2 endpoints the simulator serves, as plain functions of a request.

:class:`FreshdeskApi` routes an :class:`ApiRequest` (path after ``/api/v2``) to its handler and
returns an :class:`~triage.simulator.responses.ApiResponse`. Authentication, rate limits,
faults and logging wrap it in :class:`~triage.simulator.simulator.Simulator`.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from triage.simulator import bulk, listing, search
from triage.simulator.responses import (
    INVALID_JSON,
    MISSING_FIELD,
    MISSING_PARAMS,
    POSITIVE_INT_MAX,
    ApiResponse,
    empty,
    field_error,
    invalid_field,
    json_response,
    method_not_allowed,
    one_of,
    request_error,
    should_be,
    validation_failed,
)
from triage.simulator.store import Job, TicketStore
from triage.simulator.tickets import StoredTicket, full_view, list_item, stats_json, with_description
from triage.simulator.validation import validate_update

SHOW_INCLUDES = ("conversations", "requester", "company", "stats", "sla_policy")
MAX_INCLUDED_CONVERSATIONS = 10
NOTE_FIELDS = ("body", "private", "incoming", "notify_emails", "user_id")
FIELD_TYPES = (
    "default_subject",
    "default_requester",
    "default_ticket_type",
    "default_status",
    "default_priority",
    "default_group",
    "default_agent",
    "default_source",
    "default_description",
    "default_product",
    "default_company",
    "custom_text",
    "custom_dropdown",
)


@dataclass
class ApiRequest:
    """One request to the API; ``path`` is relative to ``/api/v2`` and ``base_url`` ends in ``/api/v2``."""

    method: str
    path: str
    raw_query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    base_url: str = "http://127.0.0.1/api/v2"
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def query_pairs(self) -> list[tuple[str, str]]:
        return parse_qsl(self.raw_query, keep_blank_values=True)

    @property
    def params(self) -> dict[str, str]:
        """Query parameters; a repeated key keeps its last value (as Rails does)."""
        return dict(self.query_pairs)


@dataclass(frozen=True)
class Route:
    """A path template such as ``/tickets/{id}`` with its handlers and rate-limit buckets by method."""

    template: str
    handlers: dict[str, str]  # method -> FreshdeskApi method name
    sub_limit: dict[str, str] = field(default_factory=dict)  # method -> rate-limit bucket

    @property
    def pattern(self) -> re.Pattern[str]:
        return _compiled(self.template)

    def allowed(self) -> list[str]:
        return list(self.handlers)


@functools.cache
def _compiled(template: str) -> re.Pattern[str]:
    regex = template.replace("{id}", r"(\d+)").replace("{job_id}", r"([A-Za-z0-9]+)")
    return re.compile(regex)


ROUTES = (
    Route(
        "/tickets",
        {"GET": "list_tickets", "POST": "create_ticket"},
        {"GET": "tickets_list", "POST": "ticket_create"},
    ),
    Route("/tickets/bulk_update", {"POST": "bulk_update"}),
    Route("/tickets/{id}", {"GET": "show_ticket", "PUT": "update_ticket"}, {"PUT": "ticket_update"}),
    Route("/tickets/{id}/conversations", {"GET": "conversations"}),
    Route("/tickets/{id}/notes", {"POST": "add_note"}),
    Route("/jobs/{job_id}", {"GET": "show_job"}),
    Route("/search/tickets", {"GET": "search_tickets"}),
    Route("/ticket_fields", {"GET": "ticket_fields"}),
    Route("/groups", {"GET": "list_groups"}),
    Route("/groups/{id}", {"GET": "show_group"}),
    Route("/agents", {"GET": "list_agents"}),
    Route("/agents/me", {"GET": "me"}),
    Route("/agents/{id}", {"GET": "show_agent"}),
)


def match_route(path: str) -> tuple[Route, re.Match[str]] | None:
    for route in ROUTES:
        matched = route.pattern.fullmatch(path)
        if matched:
            return route, matched
    return None


def credits_for(req: ApiRequest, route: Route) -> int:
    """Credits a request costs: 1, plus 2 per ``include`` on the list, 1 per ``include`` on a view."""
    wanted = len(listing.includes_of(req.params.get("include", "")))
    if route.handlers.get(req.method) == "list_tickets":
        return 1 + 2 * wanted
    if route.handlers.get(req.method) == "show_ticket":
        return 1 + wanted
    return 1


class FreshdeskApi:
    """Endpoint handlers over a :class:`TicketStore`. Callers serialise access to the store."""

    def __init__(self, store: TicketStore, bulk_delay_seconds: float) -> None:
        self.store = store
        self.bulk_delay_seconds = bulk_delay_seconds

    def dispatch(self, req: ApiRequest, route: Route, matched: re.Match[str]) -> ApiResponse:
        name = route.handlers.get(req.method)
        if name is None:
            return method_not_allowed(req.method, route.allowed())
        return getattr(self, name)(req, matched)

    # -- helpers ---------------------------------------------------------------------------------

    def _ticket(self, matched: re.Match[str]) -> StoredTicket | None:
        return self.store.get(int(matched.group(1)))

    def _json_body(self, req: ApiRequest) -> tuple[ApiResponse | None, Any]:
        """The parsed JSON body, or the 415 / 400 ``invalid_json`` answer."""
        content_type = req.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            message = f"Content-Type header is set to {content_type}. It should be set to application/json"
            return request_error(415, "invalid_content_type", message), None
        if not req.body.strip():
            return None, {}
        try:
            return None, json.loads(req.body)
        except (ValueError, UnicodeDecodeError):
            return request_error(400, "invalid_json", INVALID_JSON), None

    def _unexpected(self, req: ApiRequest, allowed: tuple[str, ...]) -> list[dict[str, str]]:
        return [invalid_field(key) for key in req.params if key not in allowed]

    def _paginate(self, req: ApiRequest, items: list[Any], extra: tuple[str, ...] = ()) -> ApiResponse:
        """Standard pagination (30 per page, up to 100) with a ``Link`` only when more items exist."""
        errors = self._unexpected(req, ("page", "per_page", *extra))
        params = req.params
        per_page, page = listing.DEFAULT_PER_PAGE, 1
        if "per_page" in params:
            number = listing.parse_positive(params["per_page"])
            if number is None or number > listing.MAX_PER_PAGE:
                code = "invalid_value" if params["per_page"].lstrip("-").isdigit() else "datatype_mismatch"
                errors.append(
                    field_error("per_page", POSITIVE_INT_MAX.format(max=listing.MAX_PER_PAGE), code)
                )
            else:
                per_page = number
        if "page" in params:
            number = listing.parse_positive(params["page"])
            if number is None:
                errors.append(field_error("page", "It should be a Positive Integer", "datatype_mismatch"))
            else:
                page = number
        if errors:
            return validation_failed(errors)
        start = (page - 1) * per_page
        rows = items[start : start + per_page + 1]
        headers = {}
        if len(rows) > per_page:
            headers["Link"] = listing.link_header(req.base_url, req.path, req.query_pairs, page + 1)
        return json_response(200, rows[:per_page], headers)

    def _requester_json(self, ticket: StoredTicket) -> dict[str, Any]:
        contact = self.store.account.contacts[ticket.requester_id]
        return {"id": contact.id, "name": contact.name, "email": contact.email, "mobile": None, "phone": None}

    def _company_json(self, ticket: StoredTicket) -> dict[str, Any] | None:
        if ticket.company_id is None:
            return None
        return {"id": ticket.company_id, "name": self.store.account.companies[ticket.company_id]}

    # -- tickets ---------------------------------------------------------------------------------

    def list_tickets(self, req: ApiRequest, matched: re.Match[str]) -> ApiResponse:
        errors, query = listing.parse_list_query(req.params, self.store)
        if errors:
            return validation_failed(errors)
        ids, more = listing.page_slice(listing.select(query, self.store), query)
        items = []
        for tid in ids:
            ticket = self.store.tickets[tid]
            item = list_item(ticket)
            if "description" in query.includes:
                with_description(item, ticket)
            if "requester" in query.includes:
                item["requester"] = self._requester_json(ticket)
            if "stats" in query.includes:
                item["stats"] = stats_json(ticket)
            if "company" in query.includes:
                item["company"] = self._company_json(ticket)
            items.append(item)
        headers = {}
        if more:
            headers["Link"] = listing.link_header(req.base_url, req.path, req.query_pairs, query.page + 1)
        return json_response(200, items, headers)

    def show_ticket(self, req: ApiRequest, matched: re.Match[str]) -> ApiResponse:
        errors = self._unexpected(req, ("include",))
        wanted: list[str] = []
        if "include" in req.params:
            wanted = listing.includes_of(req.params["include"])
            if not wanted or any(w not in SHOW_INCLUDES for w in wanted):
                errors.append(field_error("include", one_of(SHOW_INCLUDES, sep=", ")))
        if errors:
            return validation_failed(errors)
        ticket = self._ticket(matched)
        if ticket is None:
            return empty(404)
        item = full_view(ticket)
        if "conversations" in wanted:
            item["conversations"] = self.store.notes.get(ticket.id, [])[:MAX_INCLUDED_CONVERSATIONS]
        if "requester" in wanted:
            item["requester"] = self._requester_json(ticket)
        if "company" in wanted:
            item["company"] = self._company_json(ticket)
        if "stats" in wanted:
            item["stats"] = stats_json(ticket)
        if "sla_policy" in wanted:
            item["sla_policy"] = {
                "id": 67000050001,
                "name": "Default SLA Policy",
                "is_default": True,
                "active": True,
            }
        return json_response(200, item)

    def update_ticket(self, req: ApiRequest, matched: re.Match[str]) -> ApiResponse:
        failure, body = self._json_body(req)
        if failure:
            return failure
        ticket = self._ticket(matched)
        if ticket is None:
            return empty(404)
        if ticket.spam or ticket.deleted:
            return method_not_allowed("PUT", ["GET"])
        if not isinstance(body, dict):
            return request_error(400, "invalid_json", INVALID_JSON)
        if not body:
            return request_error(400, "missing_params", MISSING_PARAMS)
        errors = self._unexpected(req, ("enforce_mandatory",))
        enforce = req.params.get("enforce_mandatory", "true")
        if enforce not in ("true", "false"):
            errors.append(field_error("enforce_mandatory", one_of(("true", "false"))))
        field_errors, values = validate_update(
            body, self.store.account, ticket, enforce_mandatory=enforce != "false"
        )
        errors += field_errors
        if errors:
            return validation_failed(errors)
        self.store.apply(ticket, values, source="api", request_id=req.request_id)
        return json_response(200, full_view(ticket))

    def create_ticket(self, req: ApiRequest, matched: re.Match[str]) -> ApiResponse:
        """A minimal ``POST /tickets``: requester by ``requester_id`` or a known ``email``."""
        failure, body = self._json_body(req)
        if failure:
            return failure
        if not isinstance(body, dict):
            return request_error(400, "invalid_json", INVALID_JSON)
        account = self.store.account
        requester = body.get("requester_id")
        email = body.pop("email", None)
        errors: list[dict[str, str]] = []
        if requester is None and email is None:
            errors.append(
                field_error(
                    "requester_id", "Please fill at least 1 of requester_id, email fields", "missing_field"
                )
            )
        elif requester is None:
            requester = account.contact_by_email(str(email))
            if requester is None:
                errors.append(field_error("email", "There is no contact matching the given email"))
        for key in ("subject", "description"):
            if key not in body:
                errors.append(field_error(key, MISSING_FIELD, "missing_field"))
        body.setdefault("status", 2)
        body.setdefault("priority", 1)
        body.setdefault("source", 2)
        field_errors, values = validate_update(body, account, None)
        errors += field_errors
        if errors:
            return validation_failed(errors)
        requester_id = values.get("requester_id", requester)
        assert requester_id is not None  # a requester_id or a known email, else an error above
        now = self.store.clock.now()
        ticket = StoredTicket(
            id=self.store.next_ticket_id(),
            subject=values["subject"],
            description_text=values["description_text"],
            status=values["status"],
            priority=values["priority"],
            group_id=values.get("group_id"),
            type=values.get("type"),
            responder_id=values.get("responder_id"),
            requester_id=requester_id,
            company_id=account.contacts[requester_id].company_id,
            source=values["source"],
            created_at=now,
            updated_at=now,
            due_by=now + 3 * 86400,
            fr_due_by=now + 86400,
            custom_fields={name: None for name in account.custom_fields} | values.get("custom_fields", {}),
            tags=values.get("tags", []),
            status_updated_at=now,
        )
        self.store.add(ticket)
        return json_response(201, full_view(ticket), {"Location": f"{req.base_url}/tickets/{ticket.id}"})

    def conversations(self, req: ApiRequest, matched: re.Match[str]) -> ApiResponse:
        ticket = self._ticket(matched)
        if ticket is None:
            return empty(404)
        return self._paginate(req, self.store.notes.get(ticket.id, []))

    def add_note(self, req: ApiRequest, matched: re.Match[str]) -> ApiResponse:
        failure, body = self._json_body(req)
        if failure:
            return failure
        ticket = self._ticket(matched)
        if ticket is None:
            return empty(404)
        if ticket.spam or ticket.deleted:
            return method_not_allowed("POST", ["GET"])
        if not isinstance(body, dict):
            return request_error(400, "invalid_json", INVALID_JSON)
        errors = [invalid_field(key) for key in body if key not in NOTE_FIELDS]
        note_body = body.get("body")
        if note_body is None:
            errors.append(field_error("body", MISSING_FIELD, "missing_field"))
        elif not isinstance(note_body, str):
            errors.append(field_error("body", should_be("String", note_body), "datatype_mismatch"))
        elif not note_body.strip():
            errors.append(field_error("body", "It should not be blank as this is a mandatory field"))
        for flag in ("private", "incoming"):
            if flag in body and not isinstance(body[flag], bool):
                errors.append(field_error(flag, should_be("Boolean", body[flag]), "datatype_mismatch"))
        user_id = body.get("user_id", self.store.account.me)
        if "user_id" in body and user_id not in self.store.account.agents:
            errors.append(field_error("user_id", "There is no contact matching the given user_id"))
        if errors:
            return validation_failed(errors)
        assert isinstance(note_body, str)  # else an error above
        note = self.store.add_note(
            ticket,
            note_body,
            private=body.get("private", True),
            incoming=body.get("incoming", False),
            user_id=user_id,
            request_id=req.request_id,
        )
        return json_response(201, note, {"Location": f"{req.base_url}/tickets/{ticket.id}/conversations"})

    # -- bulk update and jobs --------------------------------------------------------------------

    def bulk_update(self, req: ApiRequest, matched: re.Match[str]) -> ApiResponse:
        failure, body = self._json_body(req)
        if failure:
            return failure
        if not isinstance(body, dict):
            return request_error(400, "invalid_json", INVALID_JSON)
        errors, action = bulk.validate_bulk(body, self.store)
        if errors:
            return validation_failed(errors)
        job = Job(
            id=uuid.uuid4().hex,
            ids=list(dict.fromkeys(action["ids"])),
            properties=action.get("properties") or {},
            reply=action.get("reply"),
            ready_at=self.store.clock.time() + self.bulk_delay_seconds,
            request_id=req.request_id,
        )
        self.store.jobs[job.id] = job
        return json_response(202, {"job_id": job.id, "href": f"{req.base_url}/jobs/{job.id}"})

    def run_due_jobs(self, now: float) -> None:
        """Apply every bulk job whose delay has passed."""
        for job in self.store.jobs.values():
            if job.status == "IN PROGRESS" and job.ready_at <= now:
                bulk.apply_job(job, self.store)

    def show_job(self, req: ApiRequest, matched: re.Match[str]) -> ApiResponse:
        job = self.store.jobs.get(matched.group(1))
        if job is None:
            return empty(404)
        return json_response(200, bulk.job_json(job))

    # -- search ----------------------------------------------------------------------------------

    def search_tickets(self, req: ApiRequest, matched: re.Match[str]) -> ApiResponse:
        params = req.params
        errors = self._unexpected(req, ("query", "page"))
        page = 1
        if "page" in params:
            number = listing.parse_positive(params["page"])
            if number is None or number > search.MAX_PAGE:
                errors.append(field_error("page", POSITIVE_INT_MAX.format(max=search.MAX_PAGE)))
            else:
                page = number
        if errors:
            return validation_failed(errors)
        try:
            predicate = search.compile_query(search.unquote_query(params.get("query")), self.store.account)
        except search.SearchError as exc:
            return validation_failed(exc.errors)
        hits = [t for t in self.store.tickets.values() if not (t.spam or t.deleted) and predicate(t)]
        hits.sort(key=lambda t: (t.created_at, t.id), reverse=True)
        start = (page - 1) * search.PAGE_SIZE
        results = [full_view(t) for t in hits[start : start + search.PAGE_SIZE]]
        for item in results:
            item.pop("attachments", None)
            item.pop("source_additional_info", None)
        return json_response(200, {"total": len(hits), "results": results})

    # -- metadata --------------------------------------------------------------------------------

    def ticket_fields(self, req: ApiRequest, matched: re.Match[str]) -> ApiResponse:
        errors = self._unexpected(req, ("type", "page", "per_page"))
        wanted = req.params.get("type")
        if wanted is not None and wanted not in FIELD_TYPES:
            errors.append(field_error("type", one_of(FIELD_TYPES)))
        if errors:
            return validation_failed(errors)
        fields = self.store.account.ticket_fields()
        if wanted is not None:
            fields = [f for f in fields if f["type"] == wanted]
        return json_response(200, fields)

    def list_groups(self, req: ApiRequest, matched: re.Match[str]) -> ApiResponse:
        account = self.store.account
        return self._paginate(req, [account.group_json(gid) for gid in account.groups])

    def show_group(self, req: ApiRequest, matched: re.Match[str]) -> ApiResponse:
        account = self.store.account
        gid = int(matched.group(1))
        if gid not in account.groups:
            return empty(404)
        item = account.group_json(gid)
        item["agent_ids"] = [a.id for a in account.agents.values() if gid in a.group_ids]
        return json_response(200, item)

    def list_agents(self, req: ApiRequest, matched: re.Match[str]) -> ApiResponse:
        account = self.store.account
        agents = list(account.agents.values())
        if "email" in req.params:
            agents = [a for a in agents if a.email.lower() == req.params["email"].lower()]
        return self._paginate(
            req, [account.agent_json(a) for a in agents], ("email", "mobile", "phone", "state")
        )

    def show_agent(self, req: ApiRequest, matched: re.Match[str]) -> ApiResponse:
        agent = self.store.account.agents.get(int(matched.group(1)))
        if agent is None:
            return empty(404)
        return json_response(200, self.store.account.agent_json(agent))

    def me(self, req: ApiRequest, matched: re.Match[str]) -> ApiResponse:
        account = self.store.account
        return json_response(200, account.agent_json(account.agents[account.me]))
