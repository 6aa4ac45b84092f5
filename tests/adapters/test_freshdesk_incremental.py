"""The incremental read: exact list parameters, restarts from the last row's second, de-duplication,
crowded seconds, the 300-page cap, and edits made while it reads."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from freshdesk_fakes import BASE, T0, FakeFreshdesk, respond, spread, ticket_json

from triage.adapters.errors import MalformedTicketError
from triage.adapters.freshdesk import incremental

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


def requested(fake: FakeFreshdesk) -> list[tuple[str, str]]:
    """``(updated_since's time, page)`` of each list request."""
    return [(p["updated_since"][11:19], p["page"]) for p in fake.list_params]


def editing(fake: FakeFreshdesk, edits: dict[int, Callable[[], None]]):
    """Serve ``fake``, calling ``edits[n]`` once ``n`` list requests have been answered."""

    def serve_and_edit(request):
        edit = edits.pop(len(fake.list_params), None)
        if edit is not None:
            edit()
        return fake(request)

    return serve_and_edit


async def test_each_page_starts_from_the_last_rows_updated_at(adapter, httpx_mock, small_pages):
    fake = FakeFreshdesk(spread(5))
    serve(httpx_mock, fake)
    tickets = await read_all(adapter)
    assert [t.id for t in tickets] == [1, 2, 3, 4, 5]  # the row of each restart's second read once
    assert requested(fake) == [("00:00:00", "1"), ("00:00:01", "1"), ("00:00:02", "1"), ("00:00:03", "1")]


async def test_an_edit_during_the_read_shifts_no_row_out_of_reach(adapter, httpx_mock, small_pages):
    """Ticket 1 (read) is edited after the first page: with offset pages, 3 would slide onto page 1."""
    fake = FakeFreshdesk(spread(6))
    later = T0 + timedelta(seconds=100)
    httpx_mock.add_callback(
        editing(fake, {1: lambda: fake.edit(1, later)}), method="GET", url=LIST_URL, is_reusable=True
    )
    read = [(t.id, t.updated_at) async for t in adapter.iter_updated_tickets(T0)]
    assert [tid for tid, _ in read] == [1, 2, 3, 4, 5, 6, 1]
    assert read[-1] == (1, later)  # the edited version too, once


async def test_a_second_fuller_than_a_page_is_paged_down_then_back_up(
    adapter, httpx_mock, small_pages, monkeypatch
):
    monkeypatch.setattr(incremental, "MAX_PAGE", 300)
    same = [ticket_json(i, T0) for i in range(1, 6)]
    later = [ticket_json(20, T0 + timedelta(seconds=1)), ticket_json(21, T0 + timedelta(seconds=2))]
    fake = FakeFreshdesk(same + later)
    serve(httpx_mock, fake)
    read = await read_all(adapter)
    assert [t.id for t in read] == [1, 2, 3, 4, 5, 20, 21]
    assert requested(fake) == [
        *[("00:00:00", page) for page in "123"],  # pages deeper while the second fills them
        *[("00:00:00", page) for page in "321"],  # back up from its last page: nothing new, complete
        ("00:00:01", "1"),
    ]


async def test_an_edit_while_paging_a_crowded_second_loses_nothing(
    adapter, httpx_mock, small_pages, monkeypatch
):
    """Ticket 1 leaves the second after pages 1-2 were read: 5 slides onto page 2, found on the way
    back up."""
    monkeypatch.setattr(incremental, "MAX_PAGE", 300)
    same = [ticket_json(i, T0) for i in range(1, 9)]
    later = [ticket_json(20, T0 + timedelta(seconds=1)), ticket_json(21, T0 + timedelta(seconds=2))]
    fake = FakeFreshdesk(same + later)
    edited = T0 + timedelta(seconds=30)
    httpx_mock.add_callback(
        editing(fake, {2: lambda: fake.edit(1, edited)}), method="GET", url=LIST_URL, is_reusable=True
    )
    read = [(t.id, t.updated_at) async for t in adapter.iter_updated_tickets(T0)]
    assert sorted({tid for tid, _ in read}) == [1, 2, 3, 4, 5, 6, 7, 8, 20, 21]
    assert len(read) == len(set(read)) == 11  # ticket 1 twice: before and after the edit
    assert [stamp for _, stamp in read] == sorted(stamp for _, stamp in read)


async def test_a_row_arriving_in_the_second_on_the_way_back_up_hides_nothing(
    adapter, httpx_mock, small_pages, monkeypatch
):
    """5 slides back while paging down (1 leaves); on the way back up, after page 3, ticket 0 arrives
    at the head of the second and pushes 5 onto page 3 again. 0 is new, so the second is read back
    up once more, and 5 is found."""
    monkeypatch.setattr(incremental, "MAX_PAGE", 300)
    same = [ticket_json(i, T0) for i in range(1, 7)]
    later = [ticket_json(20, T0 + timedelta(seconds=1)), ticket_json(21, T0 + timedelta(seconds=2))]
    fake = FakeFreshdesk([ticket_json(0, T0 - timedelta(seconds=5)), *same, *later])
    edits = {2: lambda: fake.edit(1, T0 + timedelta(seconds=30)), 4: lambda: fake.edit(0, T0)}
    httpx_mock.add_callback(editing(fake, edits), method="GET", url=LIST_URL, is_reusable=True)
    read = [(t.id, t.updated_at) async for t in adapter.iter_updated_tickets(T0)]
    assert not edits
    assert sorted({tid for tid, _ in read}) == [0, 1, 2, 3, 4, 5, 6, 20, 21]
    assert len(read) == len(set(read))
    assert [stamp for _, stamp in read] == sorted(stamp for _, stamp in read)
    assert requested(fake)[:9] == [("00:00:00", page) for page in "123321321"]


async def test_rows_arriving_through_every_pass_move_on_after_max_passes_and_warn(
    adapter, httpx_mock, small_pages, monkeypatch, caplog
):
    monkeypatch.setattr(incremental, "MAX_PAGE", 300)
    monkeypatch.setattr(incremental, "MAX_PASSES", 2)
    same = [ticket_json(i, T0) for i in range(1, 5)]
    arriving = [ticket_json(100 + i, T0 - timedelta(seconds=5)) for i in range(12)]
    fake = FakeFreshdesk([*same, *arriving, ticket_json(20, T0 + timedelta(seconds=1))])
    edits = {n: (lambda tid=100 + n: fake.edit(tid, T0)) for n in range(12)}
    httpx_mock.add_callback(editing(fake, edits), method="GET", url=LIST_URL, is_reusable=True)
    with caplog.at_level(logging.WARNING, logger="triage.adapters.freshdesk"):
        read = [t.id async for t in adapter.iter_updated_tickets(T0)]
    assert "kept arriving at updated_at=2024-05-01T00:00:00Z through 2 passes" in caplog.text
    assert {1, 2, 3, 4, 20} <= set(read)


async def test_a_read_without_an_end_stops_at_the_servers_present_when_it_began(
    adapter, httpx_mock, small_pages, monkeypatch
):
    """The server's clock (its ``Date``) says T0+2 as the read begins. After each answer its clock moves
    a second on and agents edit three tickets into that second: every second fills more than a page.
    The read stops ``PRESENT_SLACK`` past T0+2; the rest is the next read's (before, it chased the
    present for as long as the edits went on)."""
    monkeypatch.setattr(incremental, "MAX_PAGE", 300)
    idle = [ticket_json(1000 + i, T0 - timedelta(days=1, seconds=i)) for i in range(300)]
    fake = FakeFreshdesk(spread(3) + idle, now=T0 + timedelta(seconds=2))
    edits = iter(t["id"] for t in idle)  # tickets of the day before, edited three at a time

    def busy(request):
        answer = fake(request)
        fake.now += timedelta(seconds=1)
        for _ in range(3):
            ticket = next(edits, None)
            if ticket is not None:
                fake.edit(ticket, fake.now)
        return answer

    httpx_mock.add_callback(busy, method="GET", url=LIST_URL, is_reusable=True)
    read = await read_all(adapter)
    end = T0 + timedelta(seconds=2) + incremental.PRESENT_SLACK
    assert max(t.updated_at for t in read) == end - timedelta(seconds=1)
    assert {1, 2, 3} <= {t.id for t in read}
    assert len(fake.list_params) < 40, "the read chased the edits made after it began"


async def test_a_whole_cap_in_one_second_moves_on_and_warns(adapter, httpx_mock, small_pages, caplog):
    same = [ticket_json(i, T0) for i in range(1, 9)]  # 8 tickets in one second: more than 3 pages of 2
    later = [ticket_json(20, T0 + timedelta(seconds=1)), ticket_json(21, T0 + timedelta(seconds=2))]
    fake = FakeFreshdesk(same + later)
    serve(httpx_mock, fake)
    with caplog.at_level(logging.WARNING, logger="triage.adapters.freshdesk"):
        read = await read_all(adapter)
    assert [t.id for t in read] == [1, 2, 3, 4, 5, 6, 20, 21]  # 7 and 8 are beyond reach
    assert "share updated_at=2024-05-01T00:00:00Z" in caplog.text
    assert "may be missed" in caplog.text


async def test_cap_signalled_by_the_page_error_also_moves_on(adapter, httpx_mock, small_pages, monkeypatch):
    """A server that links to page 4 past the cap and answers it with the 400 page error."""
    monkeypatch.setattr(incremental, "MAX_PAGE", 10)  # the client follows Link into the error
    same = [ticket_json(i, T0) for i in range(1, 9)]
    fake = FakeFreshdesk([*same, ticket_json(20, T0 + timedelta(seconds=1))], max_page=3)
    serve(httpx_mock, fake)
    read = await read_all(adapter)
    assert [t.id for t in read] == [1, 2, 3, 4, 5, 6, 20]
    assert ("00:00:00", "4") in requested(fake)


async def test_until_is_exclusive_and_stops_reading_early(adapter, httpx_mock, small_pages):
    fake = FakeFreshdesk(spread(10))
    serve(httpx_mock, fake)
    read = await read_all(adapter, until=T0 + timedelta(seconds=3))
    assert [t.id for t in read] == [1, 2, 3]
    assert len(fake.list_params) == 3  # the third page held the first row at/after until


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
