"""Fault injection: which requests get a 5xx, a dropped connection, broken JSON, a 429 or a delay."""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field

from triage.simulator.config import FaultRule


@dataclass
class _Armed:
    rule: FaultRule
    seen: int = 0  # matching requests so far
    fired: int = 0


@dataclass
class FaultPlan:
    """What the faults decided for one request."""

    delay: float = 0.0
    storm_retry_after: int | None = None
    error_status: int | None = None
    error_after: bool = False  # the request is processed first, then answered with ``error_status``
    drop_before: bool = False
    drop_after: bool = False
    malformed: bool = False
    fired: list[str] = field(default_factory=list)


class FaultInjector:
    """Holds the active fault rules; thread-safe, changeable while the server runs."""

    def __init__(self, rules: tuple[FaultRule, ...] = (), seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._armed = [_Armed(rule) for rule in rules]

    def inject(self, kind: str, **options: object) -> FaultRule:
        """Add a rule, e.g. ``inject("error", next=3, status=503)`` or ``inject("drop", every=10)``."""
        rule = FaultRule(kind=kind, **options)  # type: ignore[arg-type]
        self.add(rule)
        return rule

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._armed.append(_Armed(rule))

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def rules(self) -> list[dict[str, object]]:
        with self._lock:
            return [{**asdict(a.rule), "seen": a.seen, "fired": a.fired} for a in self._armed]

    def plan(self, method: str, path: str) -> FaultPlan:
        """Decide the faults for a request to ``path`` (after ``/api/v2``); spent ``next`` rules go away."""
        plan = FaultPlan()
        with self._lock:
            for armed in list(self._armed):
                rule = armed.rule
                if rule.method and rule.method.upper() != method.upper():
                    continue
                if rule.path and rule.path not in path:
                    continue
                armed.seen += 1
                if rule.every is not None:
                    fires = armed.seen % rule.every == 0
                elif rule.rate is not None:
                    fires = self._rng.random() < rule.rate
                else:
                    fires = True
                if not fires:
                    continue
                armed.fired += 1
                if rule.next is not None and armed.fired >= rule.next:
                    self._armed.remove(armed)
                plan.fired.append(rule.kind)
                _apply(plan, rule)
        return plan


def _apply(plan: FaultPlan, rule: FaultRule) -> None:
    if rule.kind == "latency":
        plan.delay += rule.seconds
    elif rule.kind == "storm":
        plan.storm_retry_after = rule.retry_after
    elif rule.kind == "error":
        plan.error_status = rule.status
        plan.error_after = rule.after
    elif rule.kind == "drop":
        plan.drop_after = plan.drop_after or rule.after
        plan.drop_before = plan.drop_before or not rule.after
    elif rule.kind == "malformed":
        plan.malformed = True
