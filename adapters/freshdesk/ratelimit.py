"""Pace calls so Freshdesk's per-window limits are never exceeded, instead of waiting on 429s.

Freshdesk limits each account per minute: a total in *credits* (a ticket list with
``include=description`` costs 3) and sub-limits in *calls* for ticket list, update and create.
The budget is shared with every other integration on the account, so :class:`RateBudget` paces
on two sources and waits for whichever is stricter:

* its own log of calls in the last window (credits, and calls per bucket), each stamped with the
  time its response *arrived*; the server received it earlier, so any window the server counts
  holds no more than the limit, whether it slides or is fixed to the clock;
* the server's ``X-RateLimit-Remaining``: when it says the next call would not fit, wait for
  the window it was measured in to pass.

A 429 pauses every caller until its ``Retry-After`` has passed.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from triage.adapters.freshdesk.config import RateLimits

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class Reservation:
    """One call's place in the budget: when it ran, what it cost, which sub-limit it counts in."""

    at: float
    credits: int
    bucket: str | None


@dataclass
class _Observation:
    remaining: int
    at: float
    spent_since: int = 0


@dataclass
class RateBudget:
    """Shared pacing for every request of one adapter. ``clock`` and ``sleep`` are injectable."""

    limits: RateLimits
    clock: Clock
    sleep: Sleep
    #: Whether ``limits.total`` was set by hand: then the server's X-RateLimit-Total only lowers it.
    total_is_explicit: bool = False
    _log: deque[Reservation] = field(default_factory=deque, init=False)
    _paused_until: float = field(default=0.0, init=False)
    _server: _Observation | None = field(default=None, init=False)
    #: Guards check-and-reserve: callers may run on several event loops (threads) at once.
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    async def acquire(self, credits: int, bucket: str | None = None) -> Reservation:
        """Wait until a call costing ``credits`` (in ``bucket``) fits, then reserve it."""
        while True:
            with self._lock:
                credits = max(1, min(credits, self.limits.total))
                wait = self.wait_time(credits, bucket)
                if wait <= 0:
                    reservation = Reservation(self.clock(), credits, bucket)
                    self._log.append(reservation)
                    if self._server is not None:
                        self._server.spent_since += credits
                    return reservation
            await self.sleep(wait)

    async def wait_for_room(self, calls: Sequence[tuple[int, str | None]]) -> None:
        """Wait until ``calls`` (``(credits, bucket)`` each) fit back to back; reserves nothing."""
        while True:
            with self._lock:
                total = max(1, min(sum(credits for credits, _ in calls), self.limits.total))
                wait = max(self.wait_time(total), *(self.wait_time(c, b) for c, b in calls if b))
            if wait <= 0:
                return
            await self.sleep(wait)

    def wait_time(self, credits: int, bucket: str | None = None) -> float:
        """Seconds until a call costing ``credits`` in ``bucket`` fits (0: now). Call under the lock."""
        now = self.clock()
        window = self.limits.window_seconds
        # Calls are stamped when their responses arrive, so the log is kept sorted by hand.
        live = sorted((r for r in self._log if r.at > now - window), key=lambda r: r.at)
        self._log = deque(live)
        waits = [self._paused_until - now]

        excess = sum(r.credits for r in live) + credits - self.limits.total
        for reservation in live:
            if excess <= 0:
                break
            excess -= reservation.credits
            waits.append(reservation.at + window - now)

        limit = self.limits.sublimits.get(bucket) if bucket else None
        if limit is not None:
            same = [r for r in live if r.bucket == bucket]
            if len(same) >= limit:
                waits.append(same[len(same) - limit].at + window - now)

        seen = self._server
        if seen is not None:
            if seen.at + window <= now:
                self._server = None
            elif seen.remaining - seen.spent_since < credits:
                waits.append(seen.at + window - now)
        return max(waits)

    def settle(self, reservation: Reservation, headers: Mapping[str, str] | None) -> None:
        """Record a response: stamp the call with its arrival, take the server's view of the budget."""
        headers = {str(name).lower(): value for name, value in (headers or {}).items()}  # case-free
        with self._lock:
            reservation.at = self.clock()
            self._read_headers(reservation, headers)

    def _read_headers(self, reservation: Reservation, headers: Mapping[str, str]) -> None:
        used = _int_header(headers, "x-ratelimit-used-currentrequest")
        if used is not None and used >= 0:
            reservation.credits = used
        total = _int_header(headers, "x-ratelimit-total")
        if total is not None and total > 0:
            self._adopt_total(total)
        remaining = _int_header(headers, "x-ratelimit-remaining")
        if remaining is not None:
            self._server = _Observation(remaining=max(0, remaining), at=reservation.at)

    def pause(self, seconds: float) -> None:
        """Hold every caller for ``seconds`` from now (after a 429)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self.clock() + max(0.0, seconds))

    def _adopt_total(self, total: int) -> None:
        """Follow the account's real total (a hand-set total is only ever lowered)."""
        if total == self.limits.total or (self.total_is_explicit and total > self.limits.total):
            return
        logger.warning(
            "Freshdesk reports %d credits per window where %d were configured; following the "
            "server (set ticket_system.plan to match the account to get its sub-limits too)",
            total,
            self.limits.total,
        )
        self.limits = replace(self.limits, total=total)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None
