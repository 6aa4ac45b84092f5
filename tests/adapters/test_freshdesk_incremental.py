"""The incremental read: exact list parameters, Link paging, the 300-page restart and its de-duplication."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from freshdesk_fakes import BASE, T0, FakeFreshdesk, respond, spread, ticket_json

from adapters.errors import MalformedTicketError
from adapters.freshdesk import incremental

LIST_URL = re.compile(r".*/api/v2/tickets\?.*")


@pytest.fixture
def small_pages(monkeypatch):
    """Pages of 2 and a cap of 3 pages, so the cap is reached with a handful of tickets."""
    monkeypatch.setattr(incremental, "PER_PAGE", 2)
    monkeypatch.setattr(incremental, "MAX_PAGE", 3)


def serve(httpx_mock, fake: FakeFreshdesk) -> None:
    httpx_mock.add_callback(fake, method="GET", url=LIST_URL, is_reusable=True)


async def read_all(adapter, since=T0, until=None, **kwargs):
    return [t async for t in adapter.iter_updated_tickets(since, until, **kwargs)]


async def test_list_request_sends_exactly_the_incremental_parameters(adapter, httpx_mock):
    fake = FakeFreshdesk(spread(3))
    serve(httpx_mock, fake)
    since = datetime(2024, 5, 1, 0, 0, 0, 500000, tzinfo=UTC)

    tickets = await read_all(adapter, since=since)

    assert fake.list_params == [
        {
            "updated_since": "2024-05-01T00:00:00Z",
            "order_by": "updated_at",
            "order_type": "asc",
            "per_page": "100",
            "include": "description",
            "page": "1",
        }
    ]
    assert [t.id for t in tickets] == [2, 3]  # ticket 1 (00:00:00) is before since (00:00:00.5)


async def test_naive_since_is_utc_and_offsets_are_converted(adapter, httpx_mock):
    fake = FakeFreshdesk(spread(1))
    serve(httpx_mock, fake)
    await read_all(adapter, since=datetime(2024, 5, 1, 2, 0, tzinfo=timezone(timedelta(hours=2))))
    await read_all(adapter, since=datetime(2024, 4, 30, 22, 0))
    assert [p["updated_since"] for p in fake.list_params] == ["2024-05-01T00:00:00Z", "2024-04-30T22:00:00Z"]


async def test_pages_are_followed_while_link_says_more(adapter, httpx_mock, small_pages, monkeypatch):
    monkeypatch.setattr(incremental, "MAX_PAGE", 300)  # no cap in reach: pages of 2, 2, 1
    fake = FakeFreshdesk(spread(5))
    serve(httpx_mock, fake)
    tickets = await read_all(adapter)
    assert [t.id for t in tickets] == [1, 2, 3, 4, 5]
    assert [p["page"] for p in fake.list_params] == ["1", "2", "3"]


async def test_cap_restarts_from_the_last_updated_at_without_loss_or_repeat(adapter, httpx_mock, small_pages):
    # 13 tickets; tickets 6 and 7 share the second at which the first slice ends.
    tickets = spread(13, step=lambda i: i if i < 6 else i - 1)
    fake = FakeFreshdesk(tickets)
    serve(httpx_mock, fake)

    read = await read_all(adapter)

    assert [t.id for t in read] == list(range(1, 14))
    restarts = [p["updated_since"] for p in fake.list_params if p["page"] == "1"]
    assert restarts[0] == "2024-05-01T00:00:00Z"
    assert restarts[1] == "2024-05-01T00:00:05Z"  # the 6th row's updated_at (page 3, last row)
    assert all(int(p["page"]) <= 3 for p in fake.list_params)


async def test_cap_signalled_by_the_page_error_also_restarts(adapter, httpx_mock, small_pages, monkeypatch):
    """A server that links to page 4 past the cap and answers it with the 400 page error."""
    monkeypatch.setattr(incremental, "MAX_PAGE", 10)  # the client follows Link into the error
    fake = FakeFreshdesk(spread(9), max_page=3)
    serve(httpx_mock, fake)
    read = await read_all(adapter)
    assert [t.id for t in read] == list(range(1, 10))
    assert any(p["page"] == "4" for p in fake.list_params)


async def test_a_whole_slice_in_one_second_moves_on_and_warns(adapter, httpx_mock, small_pages, caplog):
    same = [ticket_json(i, T0) for i in range(1, 9)]  # 8 tickets in one second: more than a slice (6)
    later = [ticket_json(20, T0 + timedelta(seconds=1)), ticket_json(21, T0 + timedelta(seconds=2))]
    fake = FakeFreshdesk(same + later)
    serve(httpx_mock, fake)
    with caplog.at_level(logging.WARNING, logger="adapters.freshdesk"):
        read = await read_all(adapter)
    assert [t.id for t in read] == [1, 2, 3, 4, 5, 6, 20, 21]  # 7 and 8 are beyond reach
    assert "share updated_at=2024-05-01T00:00:00Z" in caplog.text
    assert "may be missed" in caplog.text


async def test_until_is_exclusive_and_stops_reading_early(adapter, httpx_mock, small_pages):
    fake = FakeFreshdesk(spread(10))
    serve(httpx_mock, fake)
    read = await read_all(adapter, until=T0 + timedelta(seconds=3))
    assert [t.id for t in read] == [1, 2, 3]
    assert len(fake.list_params) == 2  # page 2 held the first row at/after until


async def test_malformed_rows_go_to_the_callback_and_the_rest_is_read(adapter, httpx_mock):
    rows = spread(3)
    rows[1]["updated_at"] = "yesterday"
    httpx_mock.add_response(url=LIST_URL, json=rows)
    quarantined: list[MalformedTicketError] = []

    read = await read_all(adapter, on_malformed=quarantined.append)

    assert [t.id for t in read] == [1, 3]
    assert len(quarantined) == 1
    assert quarantined[0].ticket_id == 2 and quarantined[0].raw["updated_at"] == "yesterday"
    assert "updated_at" in str(quarantined[0])


async def test_malformed_rows_raise_without_a_callback(adapter, httpx_mock):
    rows = spread(2)
    del rows[0]["created_at"]
    httpx_mock.add_response(url=LIST_URL, json=rows)
    with pytest.raises(MalformedTicketError) as info:
        await read_all(adapter)
    assert info.value.ticket_id == 1


async def test_null_fields_are_read_as_empty(adapter, httpx_mock):
    row = ticket_json(1, subject=None, tags=None, custom_fields=None, description_text=None)
    row["description"] = "<p>Hello&nbsp;<b>there</b></p><p>Second</p>"
    httpx_mock.add_response(url=LIST_URL, json=[row])
    (ticket,) = await read_all(adapter)
    assert ticket.subject == "" and ticket.tags == () and ticket.custom_fields == {}
    assert ticket.description == "Hello there\nSecond"
    assert ticket.updated_at == T0


async def test_a_sporadic_403_on_the_list_is_retried(adapter, httpx_mock):
    pattern = LIST_URL
    httpx_mock.add_callback(
        lambda request: respond(403, {"code": "access_denied", "message": "not authorized"}), url=pattern
    )
    httpx_mock.add_response(url=pattern, json=spread(1))
    assert [t.id for t in await read_all(adapter)] == [1]


async def test_get_ticket_flags_spam_and_deleted(adapter, httpx_mock):
    httpx_mock.add_response(url=f"{BASE}/tickets/9", json=ticket_json(9, spam=True, deleted=True))
    ticket = await adapter.get_ticket(9)
    assert ticket.spam and ticket.deleted
