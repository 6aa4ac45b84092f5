"""The Freshdesk adapter: :class:`~triage.adapters.base.TicketSystemAdapter` over Freshdesk's REST API v2."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

import httpx

from triage.adapters.base import BulkUpdateResult, FieldSpec, OnMalformed, Ticket, TicketSystemAdapter
from triage.adapters.errors import (
    AuthenticationError,
    ForbiddenError,
    MalformedResponseError,
    RateLimitedError,
    TicketSystemError,
    TicketSystemValidationError,
    TransientError,
)
from triage.adapters.freshdesk import incremental
from triage.adapters.freshdesk.client import FreshdeskClient, ResponseInfo, clear_last_response, last_response
from triage.adapters.freshdesk.config import TICKET_UPDATE, TICKETS_LIST, FreshdeskConfig
from triage.adapters.freshdesk.jobs import BULK_MAX_IDS, job_outcome
from triage.adapters.freshdesk.parsing import FieldMetadata, field_metadata, html_to_text, parse_ticket
from triage.adapters.freshdesk.ratelimit import Clock, Sleep
from triage.adapters.freshdesk.search import (
    MAX_PAGES,
    MAX_RESULTS,
    PAGE_SIZE,
    SearchTooBroadError,
    build_query,
    needs_metadata,
)
from triage.adapters.freshdesk.updates import build_properties, merge_tags

logger = logging.getLogger(__name__)

#: Error messages that mean our field metadata is stale (an admin renamed or removed a choice).
_STALE_METADATA = ("It should be one of these values", "There is no group matching")


class FreshdeskAdapter(TicketSystemAdapter):
    """Reads and writes Freshdesk tickets for triage. One instance per event loop.

    ``transport`` is handed to the HTTP client (see :class:`FreshdeskClient`); ``clock``, ``sleep``
    and ``rng`` replace time and randomness in tests.
    """

    config_model: ClassVar[type[FreshdeskConfig]] = FreshdeskConfig

    def __init__(
        self,
        config: FreshdeskConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.client = FreshdeskClient(config, transport=transport, clock=clock, sleep=sleep, rng=rng)
        self._sleep = sleep
        self._clock = clock
        self._metadata: FieldMetadata | None = None

    def __repr__(self) -> str:
        return f"FreshdeskAdapter({self.config.api_base!r})"

    async def aclose(self) -> None:
        await self.client.aclose()

    @property
    def last_response(self) -> ResponseInfo | None:
        """Status and request id of the last response in the current task, for audit rows.

        ``None`` when the last call sent nothing (e.g. an update that changed nothing).
        """
        return last_response()

    def clock_offset(self) -> timedelta:
        return self.client.clock_offset()

    # -- reading ---------------------------------------------------------------------------------

    def iter_updated_tickets(
        self,
        since: datetime,
        until: datetime | None = None,
        *,
        on_malformed: OnMalformed | None = None,
    ) -> AsyncIterator[Ticket]:
        return incremental.iter_updated_tickets(self.client, since, until, on_malformed)

    async def get_ticket(self, ticket_id: int) -> Ticket:
        response = await self.client.request("GET", f"/tickets/{int(ticket_id)}")
        return parse_ticket(response.body)

    async def find_tickets(self, query: Mapping[str, Any], *, max_results: int | None = None) -> list[Ticket]:
        """Tickets matching ``query`` through Freshdesk search (see :mod:`triage.adapters.freshdesk.search`).

        Search returns at most 300 tickets. When more match, :class:`SearchTooBroadError` is
        raised unless ``max_results`` asks for the first ``max_results`` (capped at 300).
        Search lags writes by minutes: don't use it to check a write just made.
        """
        metadata = await self._get_metadata() if needs_metadata(query) else None
        text = build_query(query, metadata)
        wanted = MAX_RESULTS if max_results is None else max(0, min(max_results, MAX_RESULTS))
        tickets: list[Ticket] = []
        for page in range(1, MAX_PAGES + 1):
            response = await self.client.request(
                "GET", "/search/tickets", params={"query": f'"{text}"', "page": page}
            )
            body = response.body
            if not isinstance(body, dict) or not isinstance(body.get("results"), list):
                raise MalformedResponseError(
                    "expected {total, results} from search",
                    status_code=response.status_code,
                    request_id=response.request_id,
                )
            total = body.get("total")
            if max_results is None and isinstance(total, int) and total > MAX_RESULTS:
                raise SearchTooBroadError(total, request_id=response.request_id)
            tickets.extend(parse_ticket(raw) for raw in body["results"])
            if len(tickets) >= wanted or len(body["results"]) < PAGE_SIZE:
                break
        return tickets[:wanted]

    async def find_first_ticket(self, query: Mapping[str, Any]) -> Ticket | None:
        tickets = await self.find_tickets(query, max_results=1)
        return tickets[0] if tickets else None

    async def get_fields(self) -> dict[str, FieldSpec]:
        return dict((await self._get_metadata()).specs)

    async def refresh_fields(self) -> dict[str, FieldSpec]:
        """Re-read field metadata (choices an admin changed since the cache was filled)."""
        self._metadata = None
        return await self.get_fields()

    async def _get_metadata(self) -> FieldMetadata:
        if self._metadata is None:
            fields = (await self.client.request("GET", "/ticket_fields")).body
            if not isinstance(fields, list):
                raise MalformedResponseError("expected a JSON array from GET /ticket_fields")
            self._metadata = field_metadata(fields, await self._group_ids())
        return self._metadata

    async def _group_ids(self) -> dict[str, int] | None:
        """Group name -> id from ``/groups`` (all pages); ``None`` if this agent may not read it."""
        groups: dict[str, int] = {}
        page = 1
        while True:
            try:
                response = await self.client.request("GET", "/groups", params={"per_page": 100, "page": page})
            except ForbiddenError:
                logger.info("GET /groups is not allowed for this agent; using /ticket_fields group choices")
                return None
            for group in response.body if isinstance(response.body, list) else []:
                if isinstance(group, dict) and isinstance(group.get("id"), int) and group.get("name"):
                    groups[str(group["name"])] = group["id"]
            if not response.has_next:
                return groups
            page += 1

    # -- writing ---------------------------------------------------------------------------------

    async def update_ticket(
        self, ticket_id: int, data: Mapping[str, Any], *, current: Ticket | None = None
    ) -> Ticket:
        """Write ``data`` (labels or native values) to one ticket; returns the ticket as saved.

        ``tags`` are added to the ticket's tags (read first unless ``current`` is given), never
        replacing them. Unknown labels raise :class:`UnknownLabelError` before any request. If
        Freshdesk rejects a value as not one of its choices, the metadata is re-read once and
        the update resent when that changes what would be sent. An update that would change
        nothing sends nothing and returns the ticket (``last_response`` is then ``None``).

        A PUT whose answer is lost (5xx, timeout, dropped connection, broken body) is never resent
        blindly: the ticket is re-read, and carrying every value sent means it was applied. Else
        it is resent only while the ticket is unchanged since ``current`` (nothing anyone did
        since can be overwritten); otherwise the error is raised for the caller to re-check.
        """
        properties = await self._update_body(ticket_id, data, current)
        if not properties:
            clear_last_response()
            return current if current is not None else await self.get_ticket(ticket_id)
        try:
            return await self._put(ticket_id, properties, current)
        except TicketSystemValidationError as exc:
            if not _stale_metadata(exc):
                raise
            logger.info("Freshdesk rejected a choice of ticket %s; re-reading field metadata once", ticket_id)
            self._metadata = None
            refreshed = await self._update_body(ticket_id, data, current)
            if refreshed == properties:
                raise
        return await self._put(ticket_id, refreshed, current)

    async def _put(self, ticket_id: int, properties: Mapping[str, Any], base: Ticket | None) -> Ticket:
        """PUT ``properties``; a lost answer is resolved by re-reading (see :meth:`update_ticket`)."""
        failures = 0
        while True:
            try:
                response = await self.client.request(
                    "PUT",
                    f"/tickets/{int(ticket_id)}",
                    params=None if self.config.enforce_mandatory else {"enforce_mandatory": "false"},
                    json_body=properties,
                    bucket=TICKET_UPDATE,
                    idempotent=False,
                )
                return parse_ticket(response.body)
            except (TransientError, MalformedResponseError) as exc:
                if _surely_not_applied(exc):
                    raise
                raw = (await self.client.request("GET", f"/tickets/{int(ticket_id)}")).body
                now = parse_ticket(raw)
                if _carries(raw, properties):
                    return now  # applied; only the answer was lost
                unchanged = base is not None and now.updated_at == base.updated_at
                if not unchanged or failures >= self.config.max_retries:
                    raise
                failures += 1
                await self.client.back_off(failures, f"PUT /tickets/{ticket_id} not applied ({exc.message})")

    async def _update_body(
        self, ticket_id: int, data: Mapping[str, Any], current: Ticket | None
    ) -> dict[str, Any]:
        properties, tags = build_properties(data, await self._get_metadata())
        if tags:
            current = current if current is not None else await self.get_ticket(ticket_id)
            merged = merge_tags(current.tags, tags)
            if len(merged) != len(current.tags):
                properties["tags"] = merged
        return properties

    async def wait_for_write_room(self, *, bulk: bool = False) -> None:
        """Wait until a re-read and the write after it fit the rate budget back to back, so no
        pacing wait falls between them (a bulk write re-reads a list page, a single one a GET)."""
        read = (incremental.LIST_CREDITS, TICKETS_LIST) if bulk else (1, None)
        await self.client.budget.wait_for_room([read, (1, None if bulk else TICKET_UPDATE)])

    async def bulk_update(self, ticket_ids: Sequence[int], data: Mapping[str, Any]) -> BulkUpdateResult:
        """Apply ``data`` to many tickets with ``POST /tickets/bulk_update`` and wait for the jobs.

        Ids go in chunks of 100, one job each. ``tags`` are *appended* by Freshdesk's bulk update,
        so only the tags to add are sent. Unknown labels raise before any request; a chunk
        Freshdesk refuses, or whose job reports failures, lists those ids in ``failed``.
        Authentication and permission errors are raised, and so are transient ones whose outcome
        is unknown (a lost answer to the POST, a job whose status cannot be read): the POST is
        never resent blindly, since its job may exist; re-read the tickets to see what changed.
        """
        properties, tags = build_properties(data, await self._get_metadata())
        if tags:
            properties["tags"] = tags
        ids = list(dict.fromkeys(int(i) for i in ticket_ids))
        if not ids:
            return BulkUpdateResult(job_id=None, succeeded=(), failed={})
        if not properties:
            raise TicketSystemValidationError("nothing to update: data is empty")
        succeeded: list[int] = []
        failed: dict[int, str] = {}
        job_ids: list[str] = []
        info: ResponseInfo | None = None
        for start in range(0, len(ids), BULK_MAX_IDS):
            chunk = ids[start : start + BULK_MAX_IDS]
            try:
                job_id = await self._submit_bulk(chunk, properties)
                info = last_response()
                job_ids.append(job_id)
                done, errors = await self._wait_for_job(job_id, chunk)
            except (AuthenticationError, ForbiddenError):
                raise
            except TicketSystemError as exc:
                if exc.transient:
                    raise
                failed.update(dict.fromkeys(chunk, str(exc)))
                continue
            succeeded.extend(done)
            failed.update(errors)
        return BulkUpdateResult(
            job_id=",".join(job_ids) or None,
            succeeded=tuple(succeeded),
            failed=failed,
            request_id=info.request_id if info else None,
            status_code=info.status_code if info else None,
        )

    async def _submit_bulk(self, ids: list[int], properties: Mapping[str, Any]) -> str:
        response = await self.client.request(
            "POST",
            "/tickets/bulk_update",
            json_body={"bulk_action": {"ids": ids, "properties": properties}},
            idempotent=False,
        )
        body = response.body
        if not isinstance(body, dict) or not body.get("job_id"):
            raise MalformedResponseError(
                "bulk_update answered without a job_id",
                status_code=response.status_code,
                request_id=response.request_id,
            )
        return str(body["job_id"])

    async def _wait_for_job(self, job_id: str, ids: list[int]) -> tuple[list[int], dict[int, str]]:
        deadline = self._clock() + self.config.bulk_timeout_seconds
        while True:
            response = await self.client.request("GET", f"/jobs/{job_id}")
            outcome = job_outcome(response.body, ids)
            if outcome is not None:
                return outcome
            if self._clock() >= deadline:
                raise TransientError(
                    f"bulk job {job_id} still running after {self.config.bulk_timeout_seconds:.0f} s; "
                    "re-read the tickets to see what changed",
                    request_id=response.request_id,
                )
            await self._sleep(self.config.bulk_poll_interval_seconds)

    async def add_note(self, ticket_id: int, body: str, *, private: bool = True) -> None:
        """Add a note (HTML; plain text works) to a ticket.

        A note whose answer is lost is looked up in the ticket's conversations and resent only
        when it is not there.
        """
        failures = 0
        while True:
            try:
                await self.client.request(
                    "POST",
                    f"/tickets/{int(ticket_id)}/notes",
                    json_body={"body": body, "private": private},
                    idempotent=False,
                )
                return
            except (TransientError, MalformedResponseError) as exc:
                if _surely_not_applied(exc):
                    raise
                if await self.has_note(ticket_id, html_to_text(body)):
                    return  # created; only the answer was lost
                if failures >= self.config.max_retries:
                    raise
                failures += 1
                await self.client.back_off(
                    failures, f"note on ticket {ticket_id} not created ({exc.message})"
                )

    async def has_note(self, ticket_id: int, text: str) -> bool:
        """Whether a note or reply on the ticket contains ``text``, compared on letters and digits
        only (Freshdesk's plain-text rendering of a note's HTML may space or bullet it differently)."""
        wanted = _squash(text)
        page = 1
        while True:
            response = await self.client.request(
                "GET", f"/tickets/{int(ticket_id)}/conversations", params={"per_page": 100, "page": page}
            )
            for item in response.body if isinstance(response.body, list) else []:
                if not isinstance(item, dict):
                    continue
                shown = item.get("body_text")
                shown = shown if isinstance(shown, str) else html_to_text(item.get("body"))
                if wanted in _squash(shown):
                    return True
            if not response.has_next:
                return False
            page += 1


def _surely_not_applied(exc: TicketSystemError) -> bool:
    """Failures where Freshdesk did not act: 429, and 503 (the client resends both itself)."""
    return isinstance(exc, RateLimitedError) or exc.status_code == 503


def _carries(raw: Any, properties: Mapping[str, Any]) -> bool:
    """Whether a ticket's JSON holds every property of an update (sent tags among its tags)."""
    if not isinstance(raw, dict):
        return False
    for key, value in properties.items():
        if key == "custom_fields":
            custom = raw.get("custom_fields") or {}
            if any(custom.get(name) != item for name, item in value.items()):
                return False
        elif key == "tags":
            if not {t.lower() for t in value} <= {str(t).lower() for t in raw.get("tags") or ()}:
                return False
        elif raw.get(key) != value:
            return False
    return True


def _squash(text: str) -> str:
    return "".join(ch for ch in text if ch.isalnum()).lower()


def _stale_metadata(exc: TicketSystemValidationError) -> bool:
    return any(err.code == "invalid_value" and err.message.startswith(_STALE_METADATA) for err in exc.errors)
