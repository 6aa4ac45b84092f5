"""HTTP handling of the Freshdesk adapter: auth, waiting on 429, retries, typed errors with request ids."""

from __future__ import annotations

import base64

import httpx
import pytest
from freshdesk_fakes import API_KEY, BASE, respond, ticket_json

from triage.adapters.errors import (
    AuthenticationError,
    ForbiddenError,
    GoneError,
    MalformedResponseError,
    NotFoundError,
    RateLimitedError,
    TicketSystemError,
    TicketSystemValidationError,
    TransientError,
    is_transient,
)
from triage.adapters.freshdesk import FreshdeskAdapter, FreshdeskConfig

TICKET_URL = f"{BASE}/tickets/7"


async def test_basic_auth_with_key_and_x(adapter, httpx_mock):
    httpx_mock.add_response(url=TICKET_URL, json=ticket_json(7))
    ticket = await adapter.get_ticket(7)
    request = httpx_mock.get_request()
    expected = "Basic " + base64.b64encode(f"{API_KEY}:X".encode()).decode()
    assert request.headers["authorization"] == expected
    assert request.headers["accept"] == "application/json"
    assert ticket.id == 7 and ticket.description == "Body 7"


async def test_429_waits_retry_after_then_resends_the_same_request(adapter, httpx_mock, fake_time):
    httpx_mock.add_response(url=TICKET_URL, status_code=429, headers={"Retry-After": "17"})
    httpx_mock.add_response(url=TICKET_URL, status_code=429, headers={"retry-after": "5"})
    httpx_mock.add_callback(lambda request: respond(200, ticket_json(7)), url=TICKET_URL)

    ticket = await adapter.get_ticket(7)

    assert ticket.id == 7
    assert len(httpx_mock.get_requests()) == 3
    assert fake_time.sleeps == pytest.approx([17, 5])


async def test_429_without_retry_after_waits_one_window(make_adapter, httpx_mock, fake_time):
    adapter = make_adapter(rate_window_seconds=6)
    httpx_mock.add_response(url=TICKET_URL, status_code=429)
    httpx_mock.add_callback(lambda request: respond(200, ticket_json(7)), url=TICKET_URL)
    await adapter.get_ticket(7)
    assert fake_time.sleeps == [6]


async def test_429_pauses_every_caller_until_retry_after(adapter, httpx_mock, fake_time):
    """The pause is shared: a second call made after a 429 also waits for Retry-After."""
    httpx_mock.add_response(url=TICKET_URL, status_code=429, headers={"Retry-After": "30"})
    httpx_mock.add_callback(lambda request: respond(200, ticket_json(7)), url=TICKET_URL, is_reusable=True)
    await adapter.get_ticket(7)
    adapter.client.budget.pause(12)
    before = fake_time.now
    await adapter.get_ticket(7)
    assert fake_time.now - before == pytest.approx(12)


async def test_429_that_outlasts_the_max_wait_raises_rate_limited(make_adapter, httpx_mock, fake_time):
    adapter = make_adapter(rate_limit_max_wait_seconds=100)
    httpx_mock.add_response(
        url=TICKET_URL,
        status_code=429,
        headers={"Retry-After": "40", "X-Request-Id": "rl-1"},
        is_reusable=True,
    )
    with pytest.raises(RateLimitedError) as info:
        await adapter.get_ticket(7)
    assert info.value.retry_after == 40
    assert info.value.request_id == "rl-1" and info.value.status_code == 429
    assert is_transient(info.value)
    assert sum(fake_time.sleeps) == pytest.approx(80)  # 40 + 40, then a third 40 would pass 100


async def test_5xx_is_retried_with_growing_jittered_backoff(make_adapter, httpx_mock, fake_time):
    adapter = make_adapter(max_retries=4, backoff_base_seconds=1.0)
    for _ in range(3):
        httpx_mock.add_response(url=TICKET_URL, status_code=500, json={"message": "We're sorry"})
    httpx_mock.add_response(url=TICKET_URL, status_code=502, content=b"<html>bad gateway</html>")
    httpx_mock.add_callback(lambda request: respond(200, ticket_json(7)), url=TICKET_URL)

    assert (await adapter.get_ticket(7)).id == 7

    delays = fake_time.sleeps
    assert len(delays) == 4
    for attempt, delay in enumerate(delays):  # half fixed, half jitter: base * 2**n * [0.5, 1]
        assert 0.5 * 2**attempt <= delay <= 2**attempt


async def test_5xx_after_retries_raises_transient_with_request_id(make_adapter, httpx_mock):
    adapter = make_adapter(max_retries=2)
    httpx_mock.add_callback(
        lambda request: respond(503, {"message": "down"}, request_id="r-503"),
        url=TICKET_URL,
        is_reusable=True,
    )
    with pytest.raises(TransientError) as info:
        await adapter.get_ticket(7)
    assert len(httpx_mock.get_requests()) == 3
    assert info.value.status_code == 503 and info.value.request_id == "r-503"
    assert info.value.method == "GET" and info.value.path == "/api/v2/tickets/7"
    assert is_transient(info.value)


async def test_timeouts_and_dropped_connections_are_retried(adapter, httpx_mock, fake_time):
    httpx_mock.add_exception(httpx.ReadTimeout("read timed out"), url=TICKET_URL)
    httpx_mock.add_exception(httpx.RemoteProtocolError("closed without response"), url=TICKET_URL)
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=TICKET_URL)
    httpx_mock.add_callback(lambda request: respond(200, ticket_json(7)), url=TICKET_URL)
    assert (await adapter.get_ticket(7)).id == 7
    assert len(fake_time.sleeps) == 3


async def test_timeouts_after_retries_raise_transient(make_adapter, httpx_mock):
    adapter = make_adapter(max_retries=1)
    httpx_mock.add_exception(httpx.ReadTimeout("read timed out"), url=TICKET_URL, is_reusable=True)
    with pytest.raises(TransientError, match="timed out") as info:
        await adapter.get_ticket(7)
    assert info.value.path == "/api/v2/tickets/7" and info.value.method == "GET"
    assert len(httpx_mock.get_requests()) == 2


async def test_a_connection_that_never_opens_names_the_host_it_tried(make_adapter, httpx_mock):
    adapter = make_adapter(max_retries=0)
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=TICKET_URL)
    with pytest.raises(TransientError) as info:
        await adapter.get_ticket(7)
    assert "acme.freshdesk.com" in str(info.value)  # a wrong base_url or domain shows at once
    assert API_KEY not in str(info.value)


async def test_malformed_json_is_retried_then_reported(make_adapter, httpx_mock):
    adapter = make_adapter(max_retries=1)
    httpx_mock.add_response(url=TICKET_URL, content=b'{"id": 7, "subj', is_reusable=True)
    with pytest.raises(MalformedResponseError):
        await adapter.get_ticket(7)
    assert len(httpx_mock.get_requests()) == 2


async def test_400_is_not_retried_and_lists_every_field_error(adapter, httpx_mock, metadata_mock, fake_time):
    body = {
        "description": "Validation failed",
        "errors": [
            {"field": "custom_fields.cf_order_number", "message": "It should be a/an String", "code": "missing_field"},
            {"field": "priorty", "message": "Unexpected/invalid field in request", "code": "invalid_field"},
        ],
    }  # fmt: skip
    httpx_mock.add_callback(lambda request: respond(400, body, request_id="r-400"), method="PUT")
    with pytest.raises(TicketSystemValidationError) as info:
        await adapter.update_ticket(7, {"priority": 3})
    error = info.value
    assert error.fields == ["custom_fields.cf_order_number", "priorty"]
    assert error.errors[0].code == "missing_field" and error.errors[1].code == "invalid_field"
    assert error.status_code == 400 and error.request_id == "r-400"
    assert "custom_fields.cf_order_number" in str(error) and "r-400" in str(error)
    assert not is_transient(error)
    assert len(httpx_mock.get_requests(method="PUT")) == 1
    assert fake_time.sleeps == []


async def test_request_level_400_becomes_a_request_field_error(adapter, httpx_mock, metadata_mock):
    body = {"code": "missing_params", "message": "Your update call does not have any parameter."}
    httpx_mock.add_response(method="PUT", status_code=400, json=body)
    with pytest.raises(TicketSystemValidationError) as info:
        await adapter.update_ticket(7, {"subject": "x"})
    assert info.value.errors[0].field == "request" and info.value.errors[0].code == "missing_params"


@pytest.mark.parametrize(
    ("status", "body", "error_type"),
    [
        (401, {"code": "invalid_credentials", "message": "You have to be logged in to perform this action."},
         AuthenticationError),
        (403, {"code": "access_denied", "message": "You are not authorized to perform this action."},
         ForbiddenError),
        (404, None, NotFoundError),
        (409, {"description": "Validation failed", "errors": [
            {"field": "email", "message": "It should be a unique value", "code": "duplicate_value"}]},
         TicketSystemValidationError),
    ],
)  # fmt: skip
async def test_status_codes_map_to_typed_errors(adapter, httpx_mock, status, body, error_type):
    httpx_mock.add_callback(lambda request: respond(status, body, request_id=f"r-{status}"), url=TICKET_URL)
    with pytest.raises(error_type) as info:
        await adapter.get_ticket(7)
    assert info.value.status_code == status
    assert info.value.request_id == f"r-{status}"
    assert len(httpx_mock.get_requests()) == 1  # never retried


async def test_404_with_an_empty_body_is_not_found(adapter, httpx_mock):
    httpx_mock.add_response(url=TICKET_URL, status_code=404, content=b" ")
    with pytest.raises(NotFoundError):
        await adapter.get_ticket(7)


async def test_405_on_a_write_is_gone(adapter, httpx_mock, metadata_mock):
    httpx_mock.add_callback(
        lambda request: respond(
            405, {"message": "PUT method is not allowed. It should be one of these method(s): GET"},
            request_id="r-405", Allow="GET",
        ),
        method="PUT",
        url=TICKET_URL,
    )  # fmt: skip
    with pytest.raises(GoneError) as info:
        await adapter.update_ticket(7, {"priority": "High"})
    assert info.value.request_id == "r-405" and info.value.method == "PUT"


async def test_a_timed_out_note_is_resent_only_after_the_ticket_shows_it_absent(adapter, httpx_mock):
    """A read timeout leaves the outcome unknown: the conversations are read before the one resend."""
    url = f"{BASE}/tickets/7/notes"
    httpx_mock.add_exception(httpx.ReadTimeout("read timed out"), url=url)
    httpx_mock.add_response(url=f"{BASE}/tickets/7/conversations?per_page=100&page=1", json=[])
    httpx_mock.add_response(url=url, status_code=201, json={"id": 1, "body": "suggestion"})
    await adapter.add_note(7, "suggestion")
    assert [r.method for r in httpx_mock.get_requests()] == ["POST", "GET", "POST"]


async def test_note_is_resent_when_the_connection_never_opened(adapter, httpx_mock):
    url = f"{BASE}/tickets/7/notes"
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=url)
    httpx_mock.add_response(url=url, status_code=201, json={"id": 1, "body": "x"})
    await adapter.add_note(7, "Group: Billing (0.93)", private=True)
    sent = httpx_mock.get_requests()
    assert len(sent) == 2
    assert sent[-1].read() == b'{"body":"Group: Billing (0.93)","private":true}'


async def test_unknown_status_raises_the_base_error(adapter, httpx_mock):
    httpx_mock.add_response(
        url=TICKET_URL, status_code=415, json={"code": "invalid_content_type", "message": "no"}
    )
    with pytest.raises(TicketSystemError) as info:
        await adapter.get_ticket(7)
    assert type(info.value) is TicketSystemError and info.value.status_code == 415


async def test_last_response_keeps_status_and_request_id(adapter, httpx_mock):
    httpx_mock.add_callback(
        lambda request: respond(200, ticket_json(7), request_id="abc-123"), url=TICKET_URL
    )
    await adapter.get_ticket(7)
    info = adapter.last_response
    assert (info.method, info.path, info.status_code, info.request_id) == (
        "GET",
        "/api/v2/tickets/7",
        200,
        "abc-123",
    )


async def test_a_transport_given_to_the_adapter_carries_every_request():
    """httpx's seam: a MockTransport (as a proxy's or custom TLS transport would) sees each request."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=ticket_json(7), headers={"x-request-id": "mock-1"})

    config = FreshdeskConfig(freshdesk_domain="acme", freshdesk_api_key=API_KEY)
    adapter = FreshdeskAdapter(config, transport=httpx.MockTransport(handler))
    try:
        assert (await adapter.get_ticket(7)).id == 7
    finally:
        await adapter.aclose()
    assert [str(r.url) for r in seen] == [TICKET_URL]
    assert seen[0].headers["authorization"].startswith("Basic ")
    assert adapter.last_response.request_id == "mock-1"
