"""Read every ticket updated in a window, through Freshdesk's 300-page cap, each version once.

``GET /tickets`` is read with ``updated_since`` always set (without it Freshdesk silently
returns only tickets created in the last 30 days), ascending by ``updated_at``, 100 per page
with descriptions. Pages are followed while a ``Link`` header says more. Page 300 is the last
one Freshdesk serves: the read then restarts at page 1 from the last row's ``updated_at``.
``updated_since`` is inclusive, so rows of that second come back; they are skipped by
``(id, updated_at)``. If a whole 30,000-row slice shares one second, restarting there would
loop, so the cursor moves one second on and a warning says rows may be missed.

Known limit (Freshdesk's, shared by every client): a ticket updated *during* the scan moves to
the end of the order, which can shift one unread row onto an already-read page. The pipeline's
overlap on the next run re-reads recent rows; an old ticket shifted that way is read when it
next changes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from adapters.base import OnMalformed, Ticket
from adapters.errors import MalformedResponseError, MalformedTicketError, ValidationError
from adapters.freshdesk.client import FreshdeskClient
from adapters.freshdesk.config import TICKETS_LIST
from adapters.freshdesk.parsing import format_timestamp, parse_ticket

logger = logging.getLogger(__name__)

PER_PAGE = 100
MAX_PAGE = 300
#: A list page with include=description costs 1 credit plus 2 for the include.
LIST_CREDITS = 3
#: Sporadic 403s on long list scans are retried this many times (reference §13.3).
LIST_FORBIDDEN_RETRIES = 2


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


async def iter_updated_tickets(
    client: FreshdeskClient,
    since: datetime,
    until: datetime | None = None,
    on_malformed: OnMalformed | None = None,
) -> AsyncIterator[Ticket]:
    """Tickets with ``since <= updated_at < until`` in ascending order; see the module docstring."""
    since, until = _utc(since), _utc(until) if until is not None else None
    cursor = since.replace(microsecond=0)
    boundary: datetime | None = None  # the newest updated_at yielded so far
    boundary_ids: set[int] = set()  # ids yielded at that second
    reported: set[tuple[object, object]] = set()  # malformed rows already handed over
    while True:
        first: datetime | None = None
        last: datetime | None = None
        page = 1
        while True:
            try:
                response = await client.request(
                    "GET",
                    "/tickets",
                    params=list_params(cursor, page),
                    credits=LIST_CREDITS,
                    bucket=TICKETS_LIST,
                    forbidden_retries=LIST_FORBIDDEN_RETRIES,
                )
            except ValidationError as exc:
                if page > 1 and "page" in exc.fields:  # the cap, announced by error instead of Link
                    break
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
            for raw in rows:
                try:
                    ticket = parse_ticket(raw)
                except MalformedTicketError as exc:
                    key = (exc.ticket_id, raw.get("updated_at") if isinstance(raw, dict) else repr(raw))
                    if key not in reported:
                        reported.add(key)
                        if on_malformed is None:
                            raise
                        on_malformed(exc)
                    continue
                stamp = ticket.updated_at
                first = first or stamp
                last = stamp
                if until is not None and stamp >= until:
                    return
                if stamp < since or (stamp == boundary and ticket.id in boundary_ids):
                    continue
                if boundary is None or stamp > boundary:
                    boundary, boundary_ids = stamp, {ticket.id}
                else:
                    boundary_ids.add(ticket.id)
                if not (ticket.spam or ticket.deleted):
                    yield ticket
            if not rows or not response.has_next:
                return
            if page >= MAX_PAGE:
                break
            page += 1
        cursor = _next_cursor(cursor, first, last)


def _next_cursor(cursor: datetime, first: datetime | None, last: datetime | None) -> datetime:
    """Where the slice after a capped one starts: the last row's second, or one past it if stuck."""
    if last is None:
        raise MalformedResponseError(
            f"300 pages after updated_since={format_timestamp(cursor)} held no readable ticket; "
            "cannot tell where to continue"
        )
    if first == last:
        logger.warning(
            "more than %d tickets share updated_at=%s; continuing one second later, so some "
            "tickets of that second may be missed",
            PER_PAGE * MAX_PAGE,
            format_timestamp(last),
        )
        return last + timedelta(seconds=1)
    logger.info(
        "Freshdesk's %d-page cap reached; continuing from updated_since=%s",
        MAX_PAGE,
        format_timestamp(last),
    )
    return last


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
