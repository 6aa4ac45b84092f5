"""HTTP transport to Freshdesk: Basic auth, pacing, retries with backoff, typed errors.

:class:`FreshdeskClient` sends one logical request and returns its parsed JSON, or raises one of
:mod:`triage.adapters.errors`. It waits on the shared :class:`RateBudget` before every attempt, honours
``Retry-After`` on 429 by waiting and resending, and retries 5xx answers, timeouts, dropped
connections and unparsable bodies with exponential backoff and jitter. Requests that are not
idempotent (a POST of a note) are resent only when Freshdesk surely did not act on them.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import re
import threading
import time
import weakref
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from triage.adapters.errors import (
    AuthenticationError,
    FieldError,
    ForbiddenError,
    GoneError,
    MalformedResponseError,
    NotFoundError,
    RateLimitedError,
    TicketSystemError,
    TicketSystemValidationError,
    TransientError,
)
from triage.adapters.freshdesk.config import FreshdeskConfig
from triage.adapters.freshdesk.ratelimit import Clock, RateBudget, Sleep
from triage.redaction import redact, register_secret

logger = logging.getLogger(__name__)

#: Failures where the request never reached Freshdesk, so even a POST may be resent.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_NEXT_LINK = re.compile(r';\s*rel="?next"?', re.IGNORECASE)


@dataclass(frozen=True)
class ResponseInfo:
    """What an audit row needs from the last response: method, path, status and request id."""

    method: str
    path: str
    status_code: int
    request_id: str | None


@dataclass(frozen=True)
class ApiResponse:
    """A successful answer: parsed JSON (``None`` for an empty body), headers and request id."""

    status_code: int
    body: Any
    headers: httpx.Headers
    request_id: str | None

    @property
    def has_next(self) -> bool:
        """Whether a ``Link: <…>; rel="next"`` header says more pages exist."""
        return _NEXT_LINK.search(self.headers.get("link", "")) is not None

    @property
    def server_time(self) -> datetime | None:
        """The ticket system's clock when it answered (the ``Date`` header, to the second), if it said."""
        return _server_time(self.headers)


def _server_time(headers: httpx.Headers) -> datetime | None:
    try:
        moment = email.utils.parsedate_to_datetime(headers["date"])
    except (KeyError, TypeError, ValueError):
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_last_response: ContextVar[ResponseInfo | None] = ContextVar("freshdesk_last_response", default=None)


def last_response() -> ResponseInfo | None:
    """The last Freshdesk response received in the current task (``None`` if no request was sent)."""
    return _last_response.get()


def clear_last_response() -> None:
    _last_response.set(None)


class FreshdeskClient:
    """Sends requests to one Freshdesk account.

    ``transport`` is httpx's seam (``httpx.MockTransport`` in tests, a proxy's or a custom TLS
    transport in production); given, it serves every event loop's pool, so it must not be bound to
    one loop. ``clock``, ``sleep`` and ``rng`` are for tests.
    """

    def __init__(
        self,
        config: FreshdeskConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        register_secret(config.api_key)
        self.config = config
        self._transport = transport
        self.budget = RateBudget(
            config.rate_limits(), clock=clock, sleep=sleep, total_is_explicit=config.total_is_explicit
        )
        self._sleep = sleep
        self._rng = rng or random.Random()
        # One connection pool per event loop: a pool cannot outlive or cross loops, and callers
        # (Prefect tasks) may run each call in its own loop, or in several threads at once.
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._pools_lock = threading.Lock()
        self._clock_offset = timedelta(0)
        base = httpx.URL(config.api_base)
        self._base_path = base.path.rstrip("/")
        self._host = base.netloc.decode()  # named in transport errors: a wrong URL shows at once

    def __repr__(self) -> str:
        return f"FreshdeskClient({self.config.api_base!r})"

    def _http(self) -> httpx.AsyncClient:
        """The connection pool of the running event loop (made on first use)."""
        loop = asyncio.get_running_loop()
        with self._pools_lock:
            pool = self._pools.get(loop)
            if pool is None:
                pool = self._pools[loop] = httpx.AsyncClient(
                    base_url=self.config.api_base,
                    auth=httpx.BasicAuth(self.config.api_key, "X"),
                    headers={"Accept": "application/json", "User-Agent": "triage-freshdesk/0.1"},
                    timeout=httpx.Timeout(
                        self.config.timeout_seconds, connect=self.config.connect_timeout_seconds
                    ),
                    transport=self._transport,
                )
            return pool

    def clock_offset(self) -> timedelta:
        """How far Freshdesk's clock is ahead of this machine's (negative: behind), from the ``Date`` of
        its last answer; never more than it is (a ``Date`` is cut to the second and was sent before it
        arrived), at most a second and a request's latency less. Zero before any answer."""
        return self._clock_offset

    async def aclose(self) -> None:
        """Close the running loop's connections (pools of other, finished loops are dropped)."""
        with self._pools_lock:
            pool = self._pools.pop(asyncio.get_running_loop(), None)
            self._pools.clear()
        if pool is not None:
            await pool.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        credits: int = 1,
        bucket: str | None = None,
        idempotent: bool = True,
        forbidden_retries: int = 0,
    ) -> ApiResponse:
        """Send one request until it succeeds or fails for good; returns the parsed answer.

        ``credits`` and ``bucket`` tell the budget what the call costs. ``forbidden_retries``
        retries a 403 that many times (Freshdesk answers sporadic 403s on long list scans).
        """
        failures = 0
        rate_waited = 0.0
        max_rate_wait = self.config.rate_limit_max_wait_seconds or 10 * self.config.rate_window_seconds
        while True:
            reservation = await self.budget.acquire(credits, bucket)
            try:
                response = await self._http().request(method, path, params=params, json=json_body)
            except httpx.TransportError as exc:
                self.budget.settle(reservation, None)
                kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "connection failed"
                if failures < self.config.max_retries and (idempotent or isinstance(exc, _NOT_SENT)):
                    failures += 1
                    await self.back_off(failures, f"{method} {path} {kind} ({type(exc).__name__})")
                    continue
                outcome = "" if isinstance(exc, _NOT_SENT) or idempotent else "; outcome unknown"
                raise TransientError(
                    redact(f"request to {self._host} {kind} ({type(exc).__name__}{outcome})"),
                    method=method,
                    path=self._base_path + path,
                ) from None
            self.budget.settle(reservation, response.headers)
            served = _server_time(response.headers)
            if served is not None:
                self._clock_offset = served - datetime.now(UTC)
            info = ResponseInfo(
                method, response.request.url.path, response.status_code, response.headers.get("x-request-id")
            )
            _last_response.set(info)
            logger.debug(
                "%s %s -> %s request_id=%s credits=%s remaining=%s",
                method,
                info.path,
                info.status_code,
                info.request_id,
                response.headers.get("x-ratelimit-used-currentrequest"),
                response.headers.get("x-ratelimit-remaining"),
            )
            status = response.status_code

            if status == 429:
                retry_after = max(
                    _retry_after(response.headers, default=self.config.rate_window_seconds),
                    min(1.0, self.config.rate_window_seconds / 20),  # never spin on "Retry-After: 0"
                )
                if rate_waited + retry_after > max_rate_wait:
                    raise _error_for(response, info) from None
                rate_waited += retry_after
                logger.warning(
                    "Freshdesk rate limit reached on %s %s; waiting %.1f s as Retry-After asks",
                    method,
                    info.path,
                    retry_after,
                )
                self.budget.pause(retry_after)
                continue
            retryable = status >= 500 if idempotent else status == 503
            if status == 403 and forbidden_retries > 0:
                forbidden_retries -= 1
                retryable = True
            if retryable and failures < self.config.max_retries:
                failures += 1
                await self.back_off(failures, f"{method} {info.path} answered {status}")
                continue
            if status >= 400:
                raise _error_for(response, info) from None
            try:
                body = response.json() if response.content.strip() else None
            except (json.JSONDecodeError, UnicodeDecodeError):
                if idempotent and failures < self.config.max_retries:
                    failures += 1
                    await self.back_off(failures, f"{method} {info.path} answered unparsable JSON")
                    continue
                raise MalformedResponseError(
                    "Freshdesk answered with a body that is not JSON", **_context(info)
                ) from None
            return ApiResponse(status, body, response.headers, info.request_id)

    async def back_off(self, failures: int, what: str) -> None:
        """Sleep ``base * 2**(failures-1)`` (capped), half of it jittered."""
        delay = min(self.config.backoff_max_seconds, self.config.backoff_base_seconds * 2 ** (failures - 1))
        delay = delay / 2 + self._rng.uniform(0, delay / 2)
        logger.warning("%s; retry %d/%d in %.2f s", redact(what), failures, self.config.max_retries, delay)
        await self._sleep(delay)


def _context(info: ResponseInfo) -> dict[str, Any]:
    return {
        "status_code": info.status_code,
        "request_id": info.request_id,
        "method": info.method,
        "path": info.path,
    }


def _retry_after(headers: httpx.Headers, *, default: float) -> float:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); ``default`` if absent."""
    value = headers.get("retry-after")
    if value is None:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, when.timestamp() - time.time())


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json() if response.content.strip() else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _error_for(response: httpx.Response, info: ResponseInfo) -> TicketSystemError:
    """The typed error for a failed response, keeping Freshdesk's own message and request id."""
    body = _json_or_none(response)
    body = body if isinstance(body, dict) else {}
    status = response.status_code
    message = redact(str(body.get("message") or body.get("description") or response.reason_phrase))
    context = _context(info)
    if status in (400, 409):
        return TicketSystemValidationError(message, errors=_field_errors(body), **context)
    if status == 401:
        return AuthenticationError(f"Freshdesk rejected the API key: {message}", **context)
    if status == 403:
        code = body.get("code")
        return ForbiddenError(f"{message} ({code})" if code else message, **context)
    if status == 404:
        return NotFoundError("not found", **context)
    if status == 405 and info.method != "GET":
        return GoneError(f"the ticket is spam or deleted: {message}", **context)
    if status == 429:
        retry_after = _retry_after(response.headers, default=0.0) or None
        return RateLimitedError(
            f"rate limit still exceeded after waiting: {message}", retry_after=retry_after, **context
        )
    if status >= 500:
        return TransientError(f"Freshdesk server error: {message}", **context)
    return TicketSystemError(message, **context)


def _field_errors(body: dict[str, Any]) -> list[FieldError]:
    """Freshdesk's ``errors`` array, or the request-level ``code`` as one error on ``request``."""
    raw = body.get("errors")
    if isinstance(raw, list):
        errors = []
        for item in raw:
            if not isinstance(item, dict):
                continue
            name = str(item.get("field") or "request")
            if item.get("nested_field"):
                name = f"{name}.{item['nested_field']}"
            errors.append(
                FieldError(
                    field=name,
                    message=redact(str(item.get("message", ""))),
                    code=str(item.get("code") or "invalid_value"),
                )
            )
        return errors
    if body.get("code"):
        return [FieldError("request", redact(str(body.get("message", ""))), str(body["code"]))]
    return []
