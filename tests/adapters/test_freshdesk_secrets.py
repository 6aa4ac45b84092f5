"""The API key never reaches a log line or an error, whatever goes wrong."""

from __future__ import annotations

import base64
import logging
import traceback
from contextlib import ExitStack

import httpx
from freshdesk_fakes import API_KEY, BASE, respond, ticket_json

from triage.adapters.errors import TicketSystemError

FORMS = (API_KEY, base64.b64encode(f"{API_KEY}:X".encode()).decode())


def leaks(text: str) -> list[str]:
    return [form for form in FORMS if form in text]


def everything_about(exc: BaseException) -> str:
    """str, repr, attributes and the formatted traceback (with causes) of an error."""
    parts = [str(exc), repr(exc), repr(vars(exc))]
    parts += traceback.format_exception(exc)
    return "\n".join(parts)


async def test_key_absent_from_debug_logs_and_every_error(make_adapter, httpx_mock, caplog):
    adapter = make_adapter(max_retries=1, rate_limit_max_wait_seconds=5)
    httpx_mock.add_callback(lambda r: respond(200, ticket_json(1)), url=f"{BASE}/tickets/1")
    httpx_mock.add_callback(lambda r: respond(401, {"code": "invalid_credentials", "message": "no"}),
                            url=f"{BASE}/tickets/2")  # fmt: skip
    httpx_mock.add_exception(httpx.ConnectError(f"refused {BASE}"), url=f"{BASE}/tickets/3", is_reusable=True)
    httpx_mock.add_response(
        url=f"{BASE}/tickets/4", status_code=429, headers={"Retry-After": "3"}, is_reusable=True
    )
    httpx_mock.add_response(url=f"{BASE}/tickets/5", content=b"{not json", is_reusable=True)
    httpx_mock.add_response(url=f"{BASE}/tickets/6", status_code=500, json={"message": "x"}, is_reusable=True)

    errors: list[BaseException] = []
    with ExitStack() as stack:
        for name in ("httpx", "httpcore", "triage.adapters", ""):
            stack.enter_context(caplog.at_level(logging.DEBUG, logger=name))  # restored after the test
        for ticket_id in range(1, 7):
            try:
                await adapter.get_ticket(ticket_id)
            except TicketSystemError as exc:
                errors.append(exc)

    assert len(errors) == 5
    assert caplog.records, "expected log lines to check"
    for record in caplog.records:
        assert not leaks(record.getMessage()), record.getMessage()
    for exc in errors:
        assert not leaks(everything_about(exc))
    assert not leaks(repr(adapter)) and not leaks(repr(adapter.client)) and not leaks(repr(adapter.config))
