"""Writes: label mapping, JSON types, tag merging, metadata refresh, bulk jobs, notes, field metadata."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from freshdesk_fakes import BASE, GROUPS, T0, TICKET_FIELDS, headers, respond, ticket_json

from triage.adapters.errors import GoneError, TicketSystemValidationError, TransientError, UnknownLabelError
from triage.adapters.freshdesk.parsing import parse_ticket

TICKET_URL = f"{BASE}/tickets/7"


def sent_json(httpx_mock, method: str = "PUT") -> list[dict]:
    return [json.loads(r.read()) for r in httpx_mock.get_requests(method=method)]


def echo_update(request):
    """Answer a PUT with the ticket as updated."""
    body = json.loads(request.read())
    custom = {"cf_product": None, **body.pop("custom_fields", {})}
    return respond(200, ticket_json(7, custom_fields=custom, **body), request_id="put-1")


# -- field metadata ------------------------------------------------------------------------------


async def test_get_fields_maps_labels_to_native_values(adapter, metadata_mock):
    fields = await adapter.get_fields()
    assert fields["group"].choices == {
        "Billing": 67000000010,
        "R&D": 67000000011,
        "Technical Support": 67000000012,
    }
    assert fields["priority"].to_native("high") == 3 and fields["priority"].default == "Low"
    assert fields["type"].canonical("incident") == "Incident"
    assert fields["status"].choices["Waiting on Customer"] == 6 and fields["status"].required_for_agents
    assert fields["cf_product"].kind == "dropdown" and fields["cf_product"].to_native("api") == "API"
    assert "cf_order_number" not in fields  # text fields have no choices


async def test_field_metadata_is_cached(adapter, metadata_mock):
    await adapter.get_fields()
    await adapter.get_fields()
    assert len(metadata_mock.get_requests(url=f"{BASE}/ticket_fields")) == 1


async def test_groups_are_read_across_pages(adapter, httpx_mock):
    httpx_mock.add_response(url=f"{BASE}/ticket_fields", json=TICKET_FIELDS)
    httpx_mock.add_response(
        url=f"{BASE}/groups?per_page=100&page=1",
        json=GROUPS[:2],
        headers=headers(Link=f'<{BASE}/groups?per_page=100&page=2>; rel="next"'),
    )
    httpx_mock.add_response(url=f"{BASE}/groups?per_page=100&page=2", json=GROUPS[2:])
    fields = await adapter.get_fields()
    assert fields["group"].to_native("Technical Support") == 67000000012


async def test_groups_fall_back_to_unescaped_ticket_field_choices_on_403(adapter, httpx_mock):
    httpx_mock.add_response(url=f"{BASE}/ticket_fields", json=TICKET_FIELDS)
    httpx_mock.add_response(
        url=f"{BASE}/groups?per_page=100&page=1",
        status_code=403,
        json={"code": "access_denied", "message": "You are not authorized to perform this action."},
    )
    fields = await adapter.get_fields()
    assert fields["group"].choices == {"Billing": 67000000010, "R&D": 67000000011}
    assert fields["group"].to_native("r&amp;d") == 67000000011


# -- update_ticket -------------------------------------------------------------------------------


async def test_labels_become_native_values_sent_as_json_numbers(adapter, metadata_mock, httpx_mock):
    httpx_mock.add_callback(echo_update, method="PUT", url=TICKET_URL)
    ticket = await adapter.update_ticket(
        7, {"group": "billing", "priority": "High", "type": "incident", "cf_product": "mobile app"}
    )
    (body,) = sent_json(httpx_mock)
    assert body == {
        "group_id": 67000000010,
        "priority": 3,
        "type": "Incident",
        "custom_fields": {"cf_product": "Mobile App"},
    }
    request = httpx_mock.get_requests(method="PUT")[0]
    assert b'"priority":3' in request.read() and request.headers["content-type"] == "application/json"
    assert ticket.group_id == 67000000010 and ticket.priority == 3 and ticket.type == "Incident"
    assert adapter.last_response.request_id == "put-1" and adapter.last_response.status_code == 200


async def test_native_values_pass_through_validated(adapter, metadata_mock, httpx_mock):
    httpx_mock.add_callback(echo_update, method="PUT", url=TICKET_URL)
    await adapter.update_ticket(
        7, {"group_id": 67000000011, "priority": 4, "custom_fields": {"cf_order_number": "A-17"}}
    )
    assert sent_json(httpx_mock) == [
        {"group_id": 67000000011, "priority": 4, "custom_fields": {"cf_order_number": "A-17"}}
    ]


@pytest.mark.parametrize(
    "data",
    [
        {"group": "Legal"},
        {"priority": "Critical"},
        {"priority": 9},
        {"type": "Complaint"},
        {"cf_product": "Toaster"},
        {"cf_unknown": "x"},
        {"group_id": 123},
    ],
)
async def test_unknown_labels_raise_before_any_request(adapter, metadata_mock, httpx_mock, data):
    with pytest.raises(UnknownLabelError):
        await adapter.update_ticket(7, data)
    assert httpx_mock.get_requests(method="PUT") == []


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"priority": True}, "priority"),
        ({"tags": "ai-triaged"}, "tags"),
        ({"tags": ["a,b"]}, "tags"),
        ({"tags": ["x" * 33]}, "tags"),
        ({"priorty": 3}, "priorty"),
        ({"type": 3}, "type"),
    ],
)
async def test_malformed_values_are_rejected_before_sending(adapter, metadata_mock, httpx_mock, data, field):
    with pytest.raises(TicketSystemValidationError) as info:
        await adapter.update_ticket(7, data)
    assert info.value.fields == [field] and info.value.status_code is None
    assert httpx_mock.get_requests(method="PUT") == [] and httpx_mock.get_requests(url=TICKET_URL) == []


async def test_tags_are_merged_with_the_current_ones_read_first(adapter, metadata_mock, httpx_mock):
    httpx_mock.add_response(method="GET", url=TICKET_URL, json=ticket_json(7, tags=["vip", "AI-Triaged"]))
    httpx_mock.add_callback(echo_update, method="PUT", url=TICKET_URL)
    ticket = await adapter.update_ticket(7, {"priority": "Low", "tags": ["ai-triaged", "billing"]})
    assert sent_json(httpx_mock) == [{"priority": 1, "tags": ["vip", "AI-Triaged", "billing"]}]
    assert ticket.tags == ("vip", "AI-Triaged", "billing")


async def test_tags_use_the_given_current_ticket_without_reading(adapter, metadata_mock, httpx_mock):
    current = parse_ticket(ticket_json(7, tags=["vip"]))
    httpx_mock.add_callback(echo_update, method="PUT", url=TICKET_URL)
    await adapter.update_ticket(7, {"tags": ["ai-triaged"]}, current=current)
    assert sent_json(httpx_mock) == [{"tags": ["vip", "ai-triaged"]}]
    assert httpx_mock.get_requests(method="GET", url=TICKET_URL) == []


async def test_an_update_that_changes_nothing_sends_nothing(adapter, metadata_mock, httpx_mock):
    current = parse_ticket(ticket_json(7, tags=["ai-triaged"]))
    result = await adapter.update_ticket(7, {"tags": ["AI-triaged"]}, current=current)
    assert result is current
    assert httpx_mock.get_requests(method="PUT") == []
    assert adapter.last_response is None


async def test_enforce_mandatory_false_is_sent_as_a_query_parameter(make_adapter, metadata_mock, httpx_mock):
    adapter = make_adapter(enforce_mandatory=False)
    httpx_mock.add_callback(echo_update, method="PUT", url=f"{TICKET_URL}?enforce_mandatory=false")
    await adapter.update_ticket(7, {"priority": 2})
    assert len(httpx_mock.get_requests(method="PUT")) == 1


async def test_a_renamed_choice_refreshes_metadata_once_and_resends(adapter, httpx_mock):
    renamed = [dict(f) for f in TICKET_FIELDS]
    renamed[1] = {**renamed[1], "choices": ["Question", "Incident", "Bug"]}
    httpx_mock.add_response(url=f"{BASE}/ticket_fields", json=TICKET_FIELDS)
    httpx_mock.add_response(url=f"{BASE}/ticket_fields", json=renamed)
    httpx_mock.add_response(url=f"{BASE}/groups?per_page=100&page=1", json=GROUPS, is_reusable=True)
    stale = {"description": "Validation failed", "errors": [
        {"field": "type", "message": "It should be one of these values: 'Question,Incident,Bug'",
         "code": "invalid_value"}]}  # fmt: skip
    httpx_mock.add_response(method="PUT", url=TICKET_URL, status_code=400, json=stale)

    # "Problem" was valid in the cached metadata; after the refresh it is unknown: nothing more is sent.
    with pytest.raises(UnknownLabelError):
        await adapter.update_ticket(7, {"type": "Problem"})
    assert len(httpx_mock.get_requests(method="PUT")) == 1
    assert len(httpx_mock.get_requests(url=f"{BASE}/ticket_fields")) == 2


async def test_a_choice_error_with_unchanged_metadata_is_raised(adapter, metadata_mock, httpx_mock):
    stale = {"description": "Validation failed", "errors": [
        {"field": "custom_fields.cf_product", "message": "It should be one of these values: 'Payments'",
         "code": "invalid_value"}]}  # fmt: skip
    httpx_mock.add_response(method="PUT", url=TICKET_URL, status_code=400, json=stale)
    with pytest.raises(TicketSystemValidationError) as info:
        await adapter.update_ticket(7, {"cf_product": "API"})
    assert info.value.fields == ["custom_fields.cf_product"]
    assert len(httpx_mock.get_requests(method="PUT")) == 1


# -- bulk_update ---------------------------------------------------------------------------------


def bulk_server(httpx_mock, statuses: list[dict]):
    """Accept bulk_update calls (job ids job-1, job-2 ...) and answer job polls from ``statuses``."""
    jobs = iter(range(1, 100))

    def submit(request):
        return respond(202, {"job_id": f"job-{next(jobs)}", "href": "x"}, request_id="bulk-req")

    httpx_mock.add_callback(submit, method="POST", url=f"{BASE}/tickets/bulk_update", is_reusable=True)
    polls = iter(statuses)
    httpx_mock.add_callback(
        lambda request: respond(200, next(polls)), method="GET", url=re.compile(r".*/jobs/.*"),
        is_reusable=True,
    )  # fmt: skip


async def test_bulk_update_chunks_by_100_and_polls_each_job(adapter, metadata_mock, httpx_mock, fake_time):
    ids = list(range(1, 251))
    bulk_server(
        httpx_mock,
        [
            {"id": "job-1", "status": "IN PROGRESS"},
            {"id": "job-1", "status": "QUEUED"},
            {"id": "job-1", "status": "SUCCESS"},
            {"id": "job-2", "status": "IN_PROGRESS"},
            {"id": "job-2", "status": "SUCCESS"},
            {"id": "job-3", "status": "SUCCESS"},
        ],
    )
    result = await adapter.bulk_update(
        ids, {"group": "Billing", "priority": "Urgent", "tags": ["ai-triaged"]}
    )

    bodies = sent_json(httpx_mock, "POST")
    assert [len(b["bulk_action"]["ids"]) for b in bodies] == [100, 100, 50]
    assert bodies[0]["bulk_action"]["properties"] == {
        "group_id": 67000000010,
        "priority": 4,
        "tags": ["ai-triaged"],  # bulk appends: only the tags to add
    }
    assert result.succeeded == tuple(ids) and result.failed == {}
    assert result.job_id == "job-1,job-2,job-3"
    assert result.request_id == "bulk-req" and result.status_code == 202
    assert fake_time.sleeps.count(2.0) == 3  # three in-progress answers, one poll interval each


async def test_bulk_update_reports_per_ticket_failures(adapter, metadata_mock, httpx_mock):
    bulk_server(
        httpx_mock,
        [{"id": "job-1", "status": "PARTIAL", "data": [
            {"id": 1, "success": True},
            {"id": 2, "success": False, "errors": [{"field": "cf_order_number", "message": "Mandatory attribute missing"}]},
        ]}],
    )  # fmt: skip
    result = await adapter.bulk_update([1, 2, 3], {"priority": 2})
    assert result.succeeded == (1,)
    assert result.failed[2] == "cf_order_number: Mandatory attribute missing"
    assert "re-read" in result.failed[3]


async def test_bulk_update_rejected_chunk_lists_its_ids_as_failed(adapter, metadata_mock, httpx_mock):
    httpx_mock.add_response(
        method="POST", url=f"{BASE}/tickets/bulk_update", status_code=400,
        json={"description": "Validation failed", "errors": [{"field": "ids", "message": "bad", "code": "invalid_value"}]},
    )  # fmt: skip
    result = await adapter.bulk_update([5, 6], {"priority": 2})
    assert result.succeeded == () and set(result.failed) == {5, 6} and "ids: bad" in result.failed[5]


async def test_bulk_update_with_an_unknown_label_sends_nothing(adapter, metadata_mock, httpx_mock):
    with pytest.raises(UnknownLabelError):
        await adapter.bulk_update([1, 2], {"group": "Nope"})
    assert httpx_mock.get_requests(method="POST") == []


async def test_bulk_job_that_never_finishes_raises_as_unknown(make_adapter, metadata_mock, httpx_mock):
    """The job may still apply: its tickets are neither failed nor succeeded, the caller re-reads them."""
    adapter = make_adapter(bulk_timeout_seconds=10, bulk_poll_interval_seconds=3)
    bulk_server(httpx_mock, [{"status": "IN PROGRESS"}] * 20)
    with pytest.raises(TransientError, match="still running"):
        await adapter.bulk_update([1], {"priority": 2})


async def test_a_lost_bulk_answer_is_never_resent(adapter, metadata_mock, httpx_mock):
    httpx_mock.add_response(method="POST", url=f"{BASE}/tickets/bulk_update", status_code=502, json={})
    with pytest.raises(TransientError):
        await adapter.bulk_update([1, 2], {"priority": 2})
    assert len(httpx_mock.get_requests(method="POST")) == 1


# -- lost answers to single updates --------------------------------------------------------------


@pytest.mark.parametrize(
    ("after", "puts"),
    [
        ({"priority": 3}, 1),  # the re-read shows the value: applied, only the answer was lost
        ({}, 2),  # not applied and nobody touched the ticket: sent again
        ({"group_id": 5, "updated_at": T0 + timedelta(seconds=9)}, 1),  # someone changed it: raised
    ],
    ids=["applied", "unchanged", "changed"],
)
async def test_a_put_whose_answer_is_lost_is_resolved_by_re_reading(
    adapter, metadata_mock, httpx_mock, after, puts
):
    current = parse_ticket(ticket_json(7))
    httpx_mock.add_response(method="PUT", url=TICKET_URL, status_code=504, json={})
    httpx_mock.add_response(method="GET", url=TICKET_URL, json=ticket_json(7, **after))
    if puts == 2:
        httpx_mock.add_callback(echo_update, method="PUT", url=TICKET_URL)
    if after.get("group_id"):
        with pytest.raises(TransientError):
            await adapter.update_ticket(7, {"priority": "High"}, current=current)
    else:
        ticket = await adapter.update_ticket(7, {"priority": "High"}, current=current)
        assert ticket.priority == 3
    assert len(httpx_mock.get_requests(method="PUT")) == puts


async def test_the_re_read_waits_for_room_so_no_pacing_wait_falls_before_the_put(
    make_adapter, metadata_mock, httpx_mock, fake_time
):
    adapter = make_adapter(plan="custom", rate_limit_total=100, rate_limit_ticket_update=1)
    httpx_mock.add_response(method="GET", url=TICKET_URL, json=ticket_json(7), is_reusable=True)
    httpx_mock.add_callback(echo_update, method="PUT", url=TICKET_URL, is_reusable=True)
    await adapter.update_ticket(7, {"priority": 2})  # the window's one update
    await adapter.wait_for_write_room()
    assert fake_time.sleeps  # waited for the update sub-limit before reading, not after
    read_at = fake_time.now
    await adapter.update_ticket(7, {"priority": 3}, current=await adapter.get_ticket(7))
    assert fake_time.now == read_at


async def test_a_note_whose_answer_is_lost_is_looked_up_before_resending(adapter, httpx_mock):
    httpx_mock.add_response(method="POST", url=f"{TICKET_URL}/notes", status_code=502, json={})
    httpx_mock.add_response(
        method="GET",
        url=f"{TICKET_URL}/conversations?per_page=100&page=1",
        json=[{"id": 1, "private": True, "body": "<p>Suggested group: Billing</p>"}],
    )
    await adapter.add_note(7, "<p>Suggested  group:\nBilling</p>")
    assert len(httpx_mock.get_requests(method="POST")) == 1


# -- notes and gone tickets ----------------------------------------------------------------------


async def test_add_note_posts_a_private_note(adapter, httpx_mock):
    httpx_mock.add_response(method="POST", url=f"{TICKET_URL}/notes", status_code=201, json={"id": 1})
    await adapter.add_note(7, "<p>Suggested group: Billing (0.91)</p>")
    assert sent_json(httpx_mock, "POST") == [
        {"body": "<p>Suggested group: Billing (0.91)</p>", "private": True}
    ]


async def test_note_on_a_deleted_ticket_is_gone(adapter, httpx_mock):
    httpx_mock.add_response(method="POST", url=f"{TICKET_URL}/notes", status_code=405, json={"message": "no"})
    with pytest.raises(GoneError):
        await adapter.add_note(7, "x")
