"""Freshdesk's per-account fixed-window rate limiter: a credit total plus call sub-limits."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from triage.simulator.config import RateLimits

#: ``X-RateLimit-Total`` reported when no limit is configured.
UNLIMITED_TOTAL = 1_000_000


@dataclass(frozen=True)
class Verdict:
    """The limiter's answer for one request."""

    allowed: bool
    total: int
    remaining: int
    cost: int
    retry_after: int = 0


class RateLimiter:
    """Fixed windows of ``window_seconds``, starting with the first request after the last one ended.

    A request is refused (429) when its credits would take the window's total past the limit, or
    when its sub-limit's calls are used up. Refused requests consume nothing.
    """

    def __init__(
        self,
        limits: RateLimits | None,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self.configure(limits, window_seconds)

    def configure(self, limits: RateLimits | None, window_seconds: float) -> None:
        """Change the limits (takes effect at once; the current window starts over)."""
        if window_seconds <= 0:
            raise ValueError("window_seconds must be > 0")
        self.limits = limits
        self.window_seconds = window_seconds
        self._window_start: float | None = None
        self._credits = 0
        self._calls: dict[str, int] = {}
        self.refused = 0

    def _roll(self) -> float:
        now = self._clock()
        if self._window_start is None or now >= self._window_start + self.window_seconds:
            self._window_start = now
            self._credits = 0
            self._calls = {}
        return now

    def charge(self, cost: int, sub_limit: str | None = None) -> Verdict:
        """Take ``cost`` credits (and one call of ``sub_limit``: ``tickets_list``, ``ticket_update`` or
        ``ticket_create``) or refuse with ``retry_after``."""
        now = self._roll()
        total = self.limits.total if self.limits else UNLIMITED_TOTAL
        cap = getattr(self.limits, sub_limit) if self.limits and sub_limit else None
        over_total = self.limits is not None and self._credits + cost > total
        over_sub = cap is not None and sub_limit is not None and self._calls.get(sub_limit, 0) + 1 > cap
        if over_total or over_sub:
            self.refused += 1
            assert self._window_start is not None
            wait = max(1, math.ceil(self._window_start + self.window_seconds - now))
            return Verdict(False, total, max(0, total - self._credits), cost, retry_after=wait)
        self._credits += cost
        if sub_limit:
            self._calls[sub_limit] = self._calls.get(sub_limit, 0) + 1
        return Verdict(True, total, max(0, total - self._credits), cost)

    def snapshot(self) -> dict[str, object]:
        """The current window's usage, for the admin API."""
        return {
            "limits": None if self.limits is None else vars(self.limits),
            "window_seconds": self.window_seconds,
            "credits_used": self._credits,
            "calls": dict(self._calls),
            "refused": self.refused,
        }
