"""Progress of long work (training): phases, each with steps ``i of n``, reported to a callback.

Training reports through a :class:`Progress` it is given (default: none), so ``models`` knows
nothing of terminals or Prefect: ``triage train`` draws bars, the train flow updates progress
artifacts. A phase is started, advanced (``done`` of ``total``, never decreasing, ending at
``total``) and finished with its seconds, one phase at a time and in order; steps may come from
worker threads, but a :class:`Phase` reports them one at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Progress(Protocol):
    """Receives a long job's phases; every method returns quickly (it is called between steps)."""

    def started(self, phase: str, total: int) -> None:
        """``phase`` begins with ``total`` steps (0: none known yet; :meth:`advanced` may raise it)."""

    def advanced(self, phase: str, done: int, total: int) -> None:
        """``done`` of ``total`` steps of ``phase`` are complete."""

    def finished(self, phase: str, seconds: float) -> None:
        """``phase`` ended after ``seconds``."""


class NoProgress:
    """Reports nothing (the default)."""

    def started(self, phase: str, total: int) -> None:
        pass

    def advanced(self, phase: str, done: int, total: int) -> None:
        pass

    def finished(self, phase: str, seconds: float) -> None:
        pass


class Phase:
    """A running phase's step counter; thread-safe, reports each step in order."""

    def __init__(self, progress: Progress, name: str, total: int) -> None:
        self.progress, self.name, self.total, self.done = progress, name, max(0, total), 0
        self._lock = threading.Lock()

    def step(self, count: int = 1) -> None:
        """``count`` more steps are done."""
        with self._lock:
            self.done += count
            self.total = max(self.total, self.done)
            self.progress.advanced(self.name, self.done, self.total)

    def at(self, done: int, total: int) -> None:
        """``done`` of ``total`` steps are done (a callback for work that counts its own steps)."""
        with self._lock:
            self.total = max(self.total, total, done)
            if done > self.done:
                self.done = done
                self.progress.advanced(self.name, self.done, self.total)

    def complete(self) -> None:
        """Every step is done (a phase that ends early, e.g. from a cache, still ends at its total)."""
        with self._lock:
            if self.done < self.total:
                self.done = self.total
                self.progress.advanced(self.name, self.done, self.total)


@contextmanager
def phase(progress: Progress | None, name: str, total: int = 1) -> Iterator[Phase]:
    """Report ``name`` as started, yield its :class:`Phase`, and on success complete and finish it
    with its seconds (a failed phase is not reported as finished)."""
    target = progress if progress is not None else NoProgress()
    started = time.perf_counter()
    target.started(name, total)
    current = Phase(target, name, total)
    yield current
    current.complete()
    target.finished(name, time.perf_counter() - started)
