"""Read every ticket updated in a window, each version once, none lost while agents edit tickets.

``GET /tickets`` is read with ``updated_since`` always set (without it Freshdesk silently
returns only tickets created in the last 30 days), ascending by ``updated_at``, 100 per page
with descriptions (reference §6.3).

Offset pages are not safe in a busy helpdesk: a ticket edited during the scan moves to the end
of the order, every row after its old place moves one up, and an unread row slides onto a page
already read. So each request starts again at page 1 from the last row's ``updated_at``
(a cursor): what comes before the cursor no longer matters. ``updated_since`` is inclusive, so the
rows of the cursor's second come back; versions already yielded are skipped by
``(id, updated_at)``.

Only when one second holds more rows than a page (a mass update) does the read page deeper at
the same cursor, down to the page where the second ends. A row leaving the second meanwhile (an
agent's edit moves it to the end of the order) moves every row behind it one place up, so an
unread row can slide onto a page already read. So the second is then read again from that last
page back to page 1: a row that stays in the second is then never lost, as its page number can
only fall while the read's falls one page at a time from at or above it to page 1, so the read
lands on it. A row arriving in the second (only while it is the present second) moves rows the
other way, but is itself new: passes back up repeat until one finds nothing new, and only then
does the cursor move one second on (after ``MAX_PASSES`` passes it moves on anyway, with a
warning). Versions are yielded in ascending ``updated_at`` order. Page 300 is the last Freshdesk
serves: a second with more than 30,000 rows cannot be read whole, so the cursor moves one second
on and a warning says rows may be missed.

A read given no end ends at the ticket system's present when it began: the ``Date`` of the first page's
answer (Freshdesk's clock, not ours) plus ``PRESENT_SLACK``. Without an end, a read while agents edit
more than a page of tickets a second would chase the present for as long as they do: every second
it reaches fills a page before it ends. Later versions are the next read's (a read from before the
end finds them). A server that sends no ``Date`` is read to the end of its list.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from triage.adapters.base import OnMalformed, Ticket
from triage.adapters.errors import MalformedResponseError, MalformedTicketError, TicketSystemValidationError
from triage.adapters.freshdesk.client import FreshdeskClient
from triage.adapters.freshdesk.config import TICKETS_LIST
from triage.adapters.freshdesk.parsing import format_timestamp, parse_ticket

logger = logging.getLogger(__name__)

PER_PAGE = 100
MAX_PAGE = 300
#: Passes back up a crowded second, each finding rows that arrived meanwhile, before moving on.
MAX_PASSES = 50
#: A list page with include=description costs 1 credit plus 2 for the include.
LIST_CREDITS = 3
#: Sporadic 403s on long list scans are retried this many times (reference §13.3).
LIST_FORBIDDEN_RETRIES = 2
SECOND = timedelta(seconds=1)
#: How far past the server's ``Date`` a read without an end goes: ``Date`` comes from Freshdesk's front
#: servers, ``updated_at`` from the machines that save tickets, whose clocks may differ by a little.
PRESENT_SLACK = timedelta(seconds=5)


def list_params(cursor: datetime, page: int) -> dict[str, str | int]:
    """Query parameters of one incremental list page."""
    return {
        "updated_since": format_timestamp(cursor),
        "order_by": "updated_at",
        "order_type": "asc",
        "per_page": PER_PAGE,
        "include": "description",
        "page": page,
    }


@dataclass
class _Page:
    """One list page: its readable tickets in order, and whether Freshdesk has more rows after it."""

    tickets: list[Ticket]
    has_next: bool
    capped: bool = False  # the page number was past what the server serves
    served_at: datetime | None = None  # the server's clock when it answered


@dataclass
class _Versions:
    """``(id, updated_at)`` already yielded, kept only from the cursor on (older ones never return)."""

    by_second: dict[datetime, set[int]] = field(default_factory=dict)

    def add(self, ticket: Ticket) -> bool:
        """Record ``ticket``'s version; ``False`` if it was yielded before."""
        ids = self.by_second.setdefault(ticket.updated_at, set())
        if ticket.id in ids:
            return False
        ids.add(ticket.id)
        return True

    def forget_before(self, cursor: datetime) -> None:
        self.by_second = {second: ids for second, ids in self.by_second.items() if second >= cursor}


async def iter_updated_tickets(
    client: FreshdeskClient,
    since: datetime,
    until: datetime | None = None,
    on_malformed: OnMalformed | None = None,
) -> AsyncIterator[Ticket]:
    """Tickets with ``since <= updated_at < until`` in ascending order (without ``until``, up to a
    little past the server's present when the read began); see the module docstring."""
    since, until = _utc(since), _utc(until) if until is not None else None
    cursor = since.replace(microsecond=0)
    versions = _Versions()
    reported: set[tuple[object, object]] = set()  # malformed rows already handed over
    while True:
        page = await _fetch(client, cursor, 1, reported, on_malformed)
        if until is None and page.served_at is not None:
            until = page.served_at + PRESENT_SLACK
        for ticket in page.tickets:
            if until is not None and ticket.updated_at >= until:
                return
            if ticket.updated_at >= since and versions.add(ticket) and not (ticket.spam or ticket.deleted):
                yield ticket
        stamps = [ticket.updated_at for ticket in page.tickets]
        if not page.has_next:
            return
        if stamps and stamps[-1] > cursor:
            cursor = stamps[-1]
            versions.forget_before(cursor)
            continue
        # A page-full of rows in the cursor's second: page down through it, then back up.
        crowded = _CrowdedSecond(client, cursor, since, versions, reported, on_malformed)
        async for ticket in crowded.read():
            yield ticket
        if crowded.list_ended:
            return
        cursor += SECOND
        versions.forget_before(cursor)


@dataclass
class _CrowdedSecond:
    """Every row of one second that fills whole pages: paged down to its end, then back up."""

    client: FreshdeskClient
    second: datetime
    since: datetime
    versions: _Versions
    reported: set[tuple[object, object]]
    on_malformed: OnMalformed | None
    list_ended: bool = False  # no row after the second was seen: the list ends there
    found_new: bool = False

    async def read(self) -> AsyncIterator[Ticket]:
        last = 1  # page 1 was read by the caller
        while True:  # down to the page where the second ends
            last += 1
            page = await self._page(last)
            for ticket in self._take(page):
                yield ticket
            if self._ends_on(page):
                break
            if page.capped or last >= MAX_PAGE:
                _warn_stuck(self.second)
                return
        for _ in range(MAX_PASSES):  # back up to page 1: rows leaving cannot hide a row from it
            self.found_new, beyond, grew = False, False, False
            for number in range(last, 0, -1):
                page = await self._page(number)
                for ticket in self._take(page):
                    yield ticket
                beyond = beyond or any(ticket.updated_at > self.second for ticket in page.tickets)
                grew = grew or (number == last and not self._ends_on(page))
            if not (self.found_new or grew):
                self.list_ended = not beyond
                return
            if grew:  # rows arrived: the second now reaches past `last`
                if last >= MAX_PAGE:
                    _warn_stuck(self.second)
                    return
                last += 1
        _warn_unsettled(self.second)

    async def _page(self, number: int) -> _Page:
        return await _fetch(self.client, self.second, number, self.reported, self.on_malformed)

    def _take(self, page: _Page) -> list[Ticket]:
        """The page's versions of the second not yielded before (``found_new`` set if any), to yield."""
        new = [
            ticket
            for ticket in page.tickets
            if ticket.updated_at == self.second
            and ticket.updated_at >= self.since
            and self.versions.add(ticket)
        ]
        self.found_new = self.found_new or bool(new)
        return [ticket for ticket in new if not (ticket.spam or ticket.deleted)]

    def _ends_on(self, page: _Page) -> bool:
        """Whether the second ends on ``page``: a later row is on it, or nothing follows it."""
        return not page.has_next or any(ticket.updated_at > self.second for ticket in page.tickets)


async def _fetch(
    client: FreshdeskClient,
    cursor: datetime,
    page: int,
    reported: set[tuple[object, object]],
    on_malformed: OnMalformed | None,
) -> _Page:
    """One list page, parsed; malformed rows go to ``on_malformed`` once each (or raise)."""
    try:
        response = await client.request(
            "GET",
            "/tickets",
            params=list_params(cursor, page),
            credits=LIST_CREDITS,
            bucket=TICKETS_LIST,
            forbidden_retries=LIST_FORBIDDEN_RETRIES,
        )
    except TicketSystemValidationError as exc:
        if page > 1 and "page" in exc.fields:  # the cap, announced by error instead of Link
            return _Page([], has_next=True, capped=True)
        raise
    rows = response.body
    if not isinstance(rows, list):
        raise MalformedResponseError(
            "expected a JSON array of tickets from GET /tickets",
            status_code=response.status_code,
            request_id=response.request_id,
            method="GET",
            path="/tickets",
        )
    tickets = []
    for raw in rows:
        try:
            tickets.append(parse_ticket(raw))
        except MalformedTicketError as exc:
            key = (exc.ticket_id, raw.get("updated_at") if isinstance(raw, dict) else repr(raw))
            if key not in reported:
                reported.add(key)
                if on_malformed is None:
                    raise
                on_malformed(exc)
    return _Page(tickets, has_next=bool(rows) and response.has_next, served_at=response.server_time)


def _warn_stuck(second: datetime) -> None:
    logger.warning(
        "more than %d tickets share updated_at=%s; continuing one second later, so some "
        "tickets of that second may be missed",
        PER_PAGE * MAX_PAGE,
        format_timestamp(second),
    )


def _warn_unsettled(second: datetime) -> None:
    logger.warning(
        "tickets kept arriving at updated_at=%s through %d passes over it; continuing one second "
        "later, so some tickets of that second may be missed",
        format_timestamp(second),
        MAX_PASSES,
    )


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
