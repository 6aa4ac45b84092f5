"""find_tickets / find_first_ticket: query building, quoting, the 512-character and 300-result limits."""

from __future__ import annotations

import re
from datetime import date

import pytest
from freshdesk_fakes import respond, ticket_json

from triage.adapters.errors import TicketSystemValidationError, UnknownLabelError
from triage.adapters.freshdesk import SearchTooBroadError
from triage.adapters.freshdesk.search import build_query

SEARCH_URL = re.compile(r".*/api/v2/search/tickets\?.*")


def search_server(httpx_mock, total: int, *, page_size: int = 30):
    """Answer each page with its share of ``total`` tickets."""

    def answer(request):
        page = int(request.url.params["page"])
        first = (page - 1) * page_size
        ids = range(first + 1, min(total, first + page_size) + 1)
        return respond(200, {"total": total, "results": [ticket_json(i) for i in ids]})

    httpx_mock.add_callback(answer, url=SEARCH_URL, is_reusable=True)


def queries(httpx_mock) -> list[dict[str, str]]:
    return [dict(r.url.params) for r in httpx_mock.get_requests(url=SEARCH_URL)]


def test_mapping_becomes_anded_terms_with_quoted_strings_and_ored_lists():
    text = build_query(
        {"status": [2, 3], "tag": "vip", "created_at": date(2024, 5, 1), "agent_id": None}, None
    )
    assert text == "(status:2 OR status:3) AND tag:'vip' AND created_at:'2024-05-01' AND agent_id:null"


def test_raw_queries_pass_through_and_cannot_be_mixed():
    assert build_query({"query": "priority:>3 AND status:2"}, None) == "priority:>3 AND status:2"
    with pytest.raises(TicketSystemValidationError):
        build_query({"query": "priority:3", "status": 2}, None)


@pytest.mark.parametrize("query", [{"tag": "it's"}, {"tag": 'say "hi"'}, {}, {"status": []}])
def test_values_the_syntax_cannot_express_are_refused(query):
    with pytest.raises(TicketSystemValidationError) as info:
        build_query(query, None)
    assert info.value.fields == ["query"]


async def test_query_is_wrapped_in_double_quotes_and_labels_are_mapped(adapter, metadata_mock, httpx_mock):
    search_server(httpx_mock, total=2)
    tickets = await adapter.find_tickets(
        {"group": "Billing", "priority": ["High", "Urgent"], "type": "incident"}
    )
    assert [t.id for t in tickets] == [1, 2]
    assert queries(httpx_mock) == [
        {"query": "\"group_id:67000000010 AND (priority:3 OR priority:4) AND type:'Incident'\"", "page": "1"}
    ]


async def test_unknown_label_in_a_query_sends_no_search(adapter, metadata_mock, httpx_mock):
    with pytest.raises(UnknownLabelError):
        await adapter.find_tickets({"group": "Nowhere"})
    assert queries(httpx_mock) == []


async def test_512_character_limit_is_checked_before_sending(adapter, httpx_mock):
    with pytest.raises(TicketSystemValidationError, match="maximum of 512"):
        await adapter.find_tickets({"query": "tag:'" + "x" * 510 + "'"})
    assert httpx_mock.get_requests() == []


async def test_pages_of_30_are_read_until_a_short_one(adapter, httpx_mock):
    search_server(httpx_mock, total=75)
    tickets = await adapter.find_tickets({"status": 2})
    assert len(tickets) == 75 and len({t.id for t in tickets}) == 75
    assert [q["page"] for q in queries(httpx_mock)] == ["1", "2", "3"]
    assert all("per_page" not in q for q in queries(httpx_mock))


async def test_more_than_300_matches_is_an_explicit_error(adapter, httpx_mock):
    search_server(httpx_mock, total=301)
    with pytest.raises(SearchTooBroadError) as info:
        await adapter.find_tickets({"status": 2})
    assert info.value.total == 301 and "at most 300" in str(info.value)
    assert len(queries(httpx_mock)) == 1


async def test_max_results_takes_the_first_ones_deliberately(adapter, httpx_mock):
    search_server(httpx_mock, total=5000)
    tickets = await adapter.find_tickets({"status": 2}, max_results=1000)
    assert len(tickets) == 300
    assert [q["page"] for q in queries(httpx_mock)] == [str(p) for p in range(1, 11)]


async def test_find_first_ticket_reads_one_page(adapter, httpx_mock):
    search_server(httpx_mock, total=900)
    first = await adapter.find_first_ticket({"status": 2})
    assert first.id == 1 and len(queries(httpx_mock)) == 1


async def test_find_first_ticket_without_matches_is_none(adapter, httpx_mock):
    search_server(httpx_mock, total=0)
    assert await adapter.find_first_ticket({"tag": "nothing"}) is None
